"""Pure text -> SMS parts: GSM-7, UCS-2, smart encoding, segmentation; MO decoding.

No I/O, no clock, no randomness: reference numbers and `now` are arguments.
"""

from gateway.encoding.decode import (
    MoFragment,
    UnsupportedDataCoding,
    decode_text,
    fragment_text,
    parse_mo,
)
from gateway.encoding.options import DEFAULT_OPTIONS, EncodingOptions
from gateway.encoding.preview import Preview, preview
from gateway.encoding.reassembly import Expired, Reassembler, ReassemblyStats
from gateway.encoding.segment import Part, PlanRejected, SegmentPlan, capacity, plan
from gateway.encoding.smart import Replacement, replace_lookalikes
from gateway.encoding.udh import Concat, Udh, UdhError, split_udh

__all__ = [
    "DEFAULT_OPTIONS",
    "Concat",
    "EncodingOptions",
    "Expired",
    "MoFragment",
    "Part",
    "PlanRejected",
    "Preview",
    "Reassembler",
    "ReassemblyStats",
    "Replacement",
    "SegmentPlan",
    "Udh",
    "UdhError",
    "UnsupportedDataCoding",
    "capacity",
    "decode_text",
    "fragment_text",
    "parse_mo",
    "plan",
    "preview",
    "replace_lookalikes",
    "split_udh",
]
