-- Argo CD health of a tierra.dev InferenceService (resource.customizations.health.tierra.dev_InferenceService).
-- Progressing until the operator has observed the current generation; Degraded when it cannot
-- place the service; Progressing while migrating or while replicas become ready; else Healthy.
local hs = {status = "Progressing", message = "Waiting for the operator"}
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
local placed = conditions["Placed"]
if placed ~= nil and placed.status == "False" then
  hs.status = "Degraded"
  hs.message = placed.message or placed.reason or "not placed"
  return hs
end
local migrating = conditions["Migrating"]
if migrating ~= nil and migrating.status == "True" then
  hs.status = "Progressing"
  hs.message = migrating.message or "migrating"
  return hs
end
local ready = conditions["Ready"]
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message or "ready"
  return hs
end
if ready ~= nil then
  hs.message = ready.message or ready.reason or "replicas not ready"
end
return hs
