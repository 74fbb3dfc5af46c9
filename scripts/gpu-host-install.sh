# Sourced by the GPU-host scripts (gpu-host-train-embedded.sh, gpu-host-vae-capacity.sh), from the checkout's root:
# install_on_gpu_host PY SITE unpacks the carried bundle into SITE unless PY already imports diffsynth (a warm
# machine), installs this checkout's wanray into /tmp/wanray-site, and exports PYTHONPATH to both.
install_on_gpu_host() {
  local py=$1 site=$2
  export PYTHONPATH=/tmp/wanray-site:$site
  if ! "$py" -c "import diffsynth" 2>/dev/null; then
    eval "$(PYTHON="$py" bash .bundle/offline-install.sh .bundle "$site" --check diffsynth)"
  fi
  rm -rf /tmp/wanray-site && "$py" -m pip install -q --no-index --no-deps --no-build-isolation --no-compile \
    --target /tmp/wanray-site . 2>&1 | grep -v "^WARNING" || true
}
