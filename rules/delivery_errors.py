"""Delivery error classes from receipts (domain.md §4), shared by the gateway and the rules.

``classify_delivery_error`` turns what a receipt says (``stat``, ``err``, the
network_error_code TLV) into an ``ErrorClass`` or None (not a failure). Precedence:

1. the carrier's own ``err`` numbering (``carrier_map``, from ``[carriers.error_codes]``;
   receipt ``err`` values are vendor-specific, domain.md §4.2);
2. the network_error_code TLV when its network type is 3 (GSM): MAP error codes;
3. the receipt ``stat`` alone (EXPIRED -> temporary, REJECTD -> filtered, other failures
   -> unknown). Unknown stat strings are failures of class unknown, never success.

``record_error`` / ``record_delivered`` keep the per-recipient ``ErrorSummary`` the error
segment reads, so the receipt path and the rule agree on what counts.

Class choices (our judgement, after domain.md §4.2-4.4 and the issue text): MAP 1
unknownSubscriber is PERMANENT ("unknown subscriber" numbers are suppressed for all
marketing); MAP 5 unidentifiedSubscriber and Twilio 30005 are DISCONNECTED (segment only);
MAP 32 smDeliveryFailure without its cause is TEMPORARY_NETWORK.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import msgspec

from rules.model import ErrorClass, ErrorSummary

__all__ = [
    "HORISEN_ERR",
    "MAP_CLASSES",
    "SEGMENT_CLASSES",
    "TWILIO_API",
    "TWILIO_SMPP_ERR",
    "VONAGE",
    "classify_delivery_error",
    "parse_network_error_code",
    "record_delivered",
    "record_error",
]

_T_UNREACH = ErrorClass.TEMPORARY_UNREACHABLE
_T_NET = ErrorClass.TEMPORARY_NETWORK
_DISC = ErrorClass.DISCONNECTED
_PERM = ErrorClass.PERMANENT
_FILT = ErrorClass.FILTERED
_UNK = ErrorClass.UNKNOWN

#: GSM MAP error codes (3GPP TS 29.002) -> class.
MAP_CLASSES: dict[int, ErrorClass] = {
    1: _PERM,  # unknownSubscriber
    5: _DISC,  # unidentifiedSubscriber
    7: _PERM,  # unknownEquipment
    9: _PERM,  # illegalSubscriber
    10: _PERM,  # bearerServiceNotProvisioned
    11: _PERM,  # teleserviceNotProvisioned (no SMS subscription)
    12: _PERM,  # illegalEquipment
    13: _PERM,  # callBarred (Vonage treats barring as permanent)
    21: _PERM,  # facilityNotSupported (VLR has no MT SMS)
    6: _T_UNREACH,  # absentSubscriberSM
    8: _T_UNREACH,  # roamingNotAllowed
    27: _T_UNREACH,  # absentSubscriber
    31: _T_UNREACH,  # subscriberBusyForMT-SMS
    33: _T_UNREACH,  # messageWaitingListFull
    32: _T_NET,  # smDeliveryFailure (cause unknown here)
    34: _T_NET,  # systemFailure
    35: _T_NET,  # dataMissing
    36: _T_NET,  # unexpectedDataValue
    51: _T_NET,  # resourceLimitation
}

#: Twilio SMPP receipt ``err`` numbering (domain.md §4.2).
TWILIO_SMPP_ERR: dict[str, ErrorClass] = {
    "001": _T_UNREACH, "002": _T_UNREACH, "005": _PERM, "006": _PERM, "007": _PERM,
    "009": _PERM, "011": _T_UNREACH, "012": _T_NET,
}
#: Twilio platform error codes (domain.md §4.3).
TWILIO_API: dict[str, ErrorClass] = {
    "30003": _T_UNREACH, "30005": _DISC, "30006": _PERM, "30007": _FILT, "30008": _UNK,
}
#: Vonage delivery receipt error codes (domain.md §4.3).
VONAGE: dict[str, ErrorClass] = {
    "2": _T_UNREACH, "7": _T_UNREACH, "8": _T_NET, "3": _PERM, "4": _PERM, "9": _PERM,
    "6": _FILT, "14": _FILT,
}
#: Horisen receipt ``err`` numbering (domain.md §4.2).
HORISEN_ERR: dict[str, ErrorClass] = {"22": _T_UNREACH, "29": _T_UNREACH, "30": _T_UNREACH}

#: Classes that put a recipient in the error segment (domain.md §4.4).
SEGMENT_CLASSES = frozenset({_T_UNREACH, _T_NET, _DISC, _UNK})

_NOT_FAILURE = frozenset({"DELIVRD", "DELIVERED", "ENROUTE", "ACCEPTD", "ACCEPTED",
                          "DELETED", "SCHEDULED"})
_BY_STAT = {
    "EXPIRED": _T_UNREACH,
    "REJECTD": _FILT, "REJECTED": _FILT,
    "BARRED": _PERM,
}
_GSM_NETWORK = 3


def parse_network_error_code(value: bytes) -> tuple[int, int] | None:
    """The 3-octet network_error_code TLV -> (network type, code), None if malformed."""
    if len(value) != 3:
        return None
    return value[0], int.from_bytes(value[1:3], "big")


def _carrier_lookup(err: str, carrier_map: Mapping[str, ErrorClass]) -> ErrorClass | None:
    hit = carrier_map.get(err)
    if hit is None:
        stripped = err.lstrip("0") or "0"
        hit = carrier_map.get(stripped)
        if hit is None and err.isdigit():
            # "1" in the map also matches "001" and vice versa
            for key, cls in carrier_map.items():
                if key.isdigit() and int(key) == int(err):
                    return cls
    return hit


def classify_delivery_error(
    stat: str,
    err: str | None = None,
    network_error_code: tuple[int, int] | None = None,
    carrier_map: Mapping[str, ErrorClass] | None = None,
) -> ErrorClass | None:
    """The error class of a receipt, or None when it is not a failure.

    ``stat`` is the receipt's stat (``UNDELIV``, ``EXPIRED`` ...; message_state names work
    too), ``err`` its err field, ``network_error_code`` the parsed TLV, ``carrier_map`` the
    carrier's err numbering. DELIVRD, ENROUTE, ACCEPTD and DELETED (administrative, no
    penalty) are not failures.
    """
    s = stat.strip().upper()
    if s in _NOT_FAILURE:
        return None
    e = (err or "").strip()
    if carrier_map and e:
        hit = _carrier_lookup(e, carrier_map)
        if hit is not None:
            return hit
    if network_error_code is not None and network_error_code[0] == _GSM_NETWORK:
        cls = MAP_CLASSES.get(network_error_code[1])
        if cls is not None:
            return cls
    return _BY_STAT.get(s, _UNK)


def record_error(summary: ErrorSummary, cls: ErrorClass, at: datetime) -> ErrorSummary:
    """The summary after a failure of class ``cls`` at ``at`` (FILTERED changes nothing:
    it points at the sender or content, not the recipient)."""
    changes: dict[str, object] = {}
    if cls in SEGMENT_CLASSES and (summary.last_temporary_at is None
                                   or at > summary.last_temporary_at):
        changes["last_temporary_at"] = at
    if cls is _T_UNREACH:
        changes["unreachable_count"] = summary.unreachable_count + 1
    elif cls is _DISC:
        changes["disconnected_count"] = summary.disconnected_count + 1
    elif cls is _PERM:
        changes["permanent"] = True
        if summary.permanent_at is None:
            changes["permanent_at"] = at
    if not changes:
        return summary
    return msgspec.structs.replace(summary, **changes)


def record_delivered(summary: ErrorSummary, at: datetime) -> ErrorSummary:
    """The summary after a DELIVRD receipt at ``at``."""
    if summary.last_delivered_at is not None and summary.last_delivered_at >= at:
        return summary
    return msgspec.structs.replace(summary, last_delivered_at=at)
