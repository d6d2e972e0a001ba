"""The monitor service: accounting of GPU time and energy per job, project and user (drift comes later)."""
