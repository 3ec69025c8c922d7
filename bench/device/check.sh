#!/usr/bin/env bash
# First accelerator call (short): GPU, torch / transformers versions, WebGPU start and a 4096^3 matmul.
# Run on the device machine from the project root (carry .device and the library build).
set -u
source .device/enter.sh
f=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json; [ -e "$f" ] && export VK_DRIVER_FILES=$f
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__, torch.cuda.get_device_name(0))"
node --version
TFLENS_BACKEND=webgpu node bench/gpu-check.mjs 2>&1
