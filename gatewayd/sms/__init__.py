"""SMS: text encoding and segmentation (the SMPP link follows)."""
