"""GPU telemetry of a node agent: every card sampled each second (NVML on a real node, synthetic values
marked `simulated="true"` on a declared one) and published with dcgm-exporter's metric names, so
NVIDIA's dashboards and alert rules written for dcgm-exporter work unchanged."""
