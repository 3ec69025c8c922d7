#!/usr/bin/env bash
# Packs what bench/device/train.sh needs on the accelerator machine into bench/out/train: node, the
# dependency closure of the packages scripts/train-zoo.ts imports (run from source through tsx, so no
# dist/) and the Vulkan/GL loaders. Then one device call with carry ["bench/out/train"]:
#   JOBS=... bash bench/device/train.sh
set -euo pipefail
root=$(git rev-parse --show-toplevel); cd "$root"
BUNDLE_OUT=bench/out/train BUNDLE_ROOTS="@tensorflow/tfjs @tensorflow/tfjs-backend-webgpu webgpu tsx @huggingface/tokenizers" bash bench/kernels/bundle.sh
total=$(( $(du -sm bench/out/train | cut -f1) + $(git ls-files -z | xargs -0 du -cm | tail -1 | cut -f1) ))
echo "carry + work tree: about ${total} MiB (at most 64)"
