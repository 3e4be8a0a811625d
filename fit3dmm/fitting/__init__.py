"""fit3dmm."""
