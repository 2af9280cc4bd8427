"""Pure text -> SMS parts: GSM-7, UCS-2, smart encoding, segmentation."""
