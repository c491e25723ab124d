# Shell helpers shared by the entry scripts (configs/*/*.sh, tools/demo.sh); source it.

# The newest (by time) complete weights_* folder of a model's log dir, or nothing.
last_weights() { ls -td "$1"/models/weights_* 2>/dev/null | grep -v '\.partial$' | head -n 1 || true; }
