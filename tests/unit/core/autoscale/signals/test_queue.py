"""The queue signal's allowance: from the SLO for the request mix, within the configured
bounds."""

from __future__ import annotations

from tierra.core.autoscale import (
    ScalerState,
    queue_allowance,
    recommend,
)
from tierra_testing.autoscale import (
    inputs,
    steady,
)


def test_the_queue_allowance_comes_from_the_slo_for_the_request_mix() -> None:
    chat = inputs()
    assert queue_allowance(chat) == 2.0 / 0.375  # the last of n is out after n x work
    code = inputs(mean_prompt_tokens=6000.0, mean_output_tokens=20.0)  # 0.775 s alone
    assert queue_allowance(code) == 2.0 / 0.775 < queue_allowance(chat)
    # a loose SLO is bounded by the configured maxConcurrency + maxQueuePerReplica
    assert queue_allowance(inputs(latency_p95_ms=600_000.0)) == 32 + 8
    # the TTFT budget lets maxConcurrency run and what its budget drains wait
    assert queue_allowance(inputs(latency_p95_ms=60_000.0, ttft_p95_ms=750.0)) == 32 + 2
    # never below one request, and the configured bound without a request size
    assert queue_allowance(inputs(mean_prompt_tokens=8e6)) == 1.0
    assert queue_allowance(inputs(mean_prompt_tokens=None)) == 40
    # 40 in the system of long prompts need more replicas than 40 short ones
    rec = recommend(
        inputs(signals=steady(0.0, 2.0, 40.0), mean_prompt_tokens=6000.0), ScalerState(), 0.0
    )
    assert (
        rec.needs["queue"]
        > recommend(inputs(signals=steady(0.0, 2.0, 40.0)), ScalerState(), 0.0).needs["queue"]
    )
