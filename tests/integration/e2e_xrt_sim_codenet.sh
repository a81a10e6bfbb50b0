#!/usr/bin/env bash
# CoDeNet on "xrt-sim": the daemon runs the 256² W4A8 CoDeNet model with a
# bounded depthwise deformable decoder through the FPGA host path (the layers
# the kernel takes on the C-simulated detd_accel, the rest on cpu).  Every
# published result must come from xrt-sim and equal the cpu engine's output
# on the same dumped frame, bit for bit (e2e_check).
. "$(dirname "$0")/e2e_lib.sh"
[ -n "${CDN_FIXTURES:-}" ] || skip "no CoDeNet fixtures (need /usr/bin/python3 with torch)"
CDN_MODEL=$CDN_FIXTURES/s256_dw_q.json
[ -f "$CDN_MODEL" ] || skip "no $CDN_MODEL"
MODEL_CFG="{ \"path\": \"$CDN_MODEL\", \"format\": \"codenet\" }"
xrt_sim_matches_cpu "CoDeNet 256² W4A8" "$CDN_MODEL" ""
