#!/usr/bin/env bash
# "xrt-sim": the daemon runs the traffic model through the FPGA host path
# (plan → device buffers → kernel runs → sync back) on the C-simulated
# detd_accel kernel.  Every published result must come from xrt-sim (not a
# cpu fallback) and equal the cpu engine's output on the same dumped frame,
# bit for bit (e2e_check, as in e2e_detections.sh).
. "$(dirname "$0")/e2e_lib.sh"
xrt_sim_matches_cpu "traffic model" "$MODEL" "$LABELS"
