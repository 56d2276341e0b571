-- Argo CD health of a tierra.dev Tier (resource.customizations.health.tierra.dev_Tier).
-- Degraded when its cluster is unreachable or no pool has capacity; Healthy when Ready.
local hs = {status = "Progressing", message = "Waiting for the operator to probe the cluster"}
if obj.status == nil or obj.status.conditions == nil then
  return hs
end
local generation = obj.metadata.generation
if generation ~= nil and obj.status.observedGeneration ~= generation then
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end
local conditions = {}
for _, condition in ipairs(obj.status.conditions) do
  conditions[condition.type] = condition
end
local reachable = conditions["Reachable"]
if reachable ~= nil and reachable.status == "False" then
  hs.status = "Degraded"
  hs.message = (reachable.reason or "Unreachable") .. ": " .. (reachable.message or "")
  return hs
end
local ready = conditions["Ready"]
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message or "ready"
  return hs
end
if ready ~= nil and ready.status == "False" then
  hs.status = "Degraded"
  hs.message = ready.message or ready.reason or "not ready"
end
return hs
