#!/usr/bin/env bash
# On an offline GPU host: install the wheels carried in .gpuwhl/ and this checkout (non-editable, so the
# wanray.datasets/... package mapping applies) into /tmp/site. Then: export PYTHONPATH=/tmp/site
#   carry .gpuwhl: diffsynth modelscope modelscope-hub ftfy wcwidth diffusers xfuser yunchang distvae
#                  beautifulsoup4 soupsieve sageattention torchao
#                  nvidia-cudnn-frontend (1.16.0: FP8 attention; pip download --no-deps for cp312 manylinux)
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpuwhl/*.whl
python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --no-cache-dir --target /tmp/site . \
  2>&1 | grep -v "^WARNING" || true
PYTHONPATH=/tmp/site python3 -c "import wanray, diffsynth, xfuser, yunchang; print('wanray', wanray.__file__)"
