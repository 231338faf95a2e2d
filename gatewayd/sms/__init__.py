"""SMS: the GSM 03.38 / UCS-2 codec, the SMPP links, receipts, inbound SMS (docs/sms.md)."""
