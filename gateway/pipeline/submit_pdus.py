"""Encoding parts -> ``submit_sm`` PDUs for one carrier (pure; on the hot path, per part).

``SubmitBuilder(carrier)`` precomputes what is the same for every PDU of a carrier
(destination TON/NPI, registered_delivery, the relative validity string, service_type,
the default sender's TON/NPI); ``build`` then only fills the per-message fields.

Addresses (domain.md §1.3, Kannel's rules [S5]):

* source ``"+digits"``: TON 1 (international) / NPI 1 (E.164), the '+' stripped;
* source of digits only: up to 8 digits is a short code, TON 3 (network specific) / NPI 0;
  longer is an international number without its '+', TON 1 / NPI 1;
* anything else (letters): alphanumeric, TON 5 / NPI 0;
* no sender and no ``default_sender``: empty source_addr (SMSC default), TON 0 / NPI 0;
* ``source_ton`` / ``source_npi`` in the carrier config override the derived values;
* destination: the E.164 number without '+', ``dest_ton`` / ``dest_npi`` (default 1 / 1).

Segments: esm_class comes from the part (0x40 UDHI when short_message starts with the
concatenation UDH); SAR parts carry sar_msg_ref_num / sar_total_segments /
sar_segment_seqnum (§5.3.2.22-24); payload mode puts the whole message in message_payload
with sm_length 0 (§5.3.2.32: never both).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Protocol

from gateway.encoding import Part
from gateway.smpp.pdu import SubmitSm, Tlv, message_payload_tlv, sar_tlvs

__all__ = [
    "SHORT_CODE_MAX_DIGITS",
    "CarrierSubmitSettings",
    "SubmitBuilder",
    "relative_validity",
    "source_address",
]

#: Digits-only senders up to this long are short codes (TON 3).
SHORT_CODE_MAX_DIGITS: Final = 8

TON_UNKNOWN: Final = 0
TON_INTERNATIONAL: Final = 1
TON_NETWORK_SPECIFIC: Final = 3
TON_ALPHANUMERIC: Final = 5
NPI_UNKNOWN: Final = 0
NPI_E164: Final = 1


class CarrierSubmitSettings(Protocol):
    """What the builder reads from a carrier (``gateway.config.CarrierConfig`` fits)."""

    @property
    def name(self) -> str: ...

    @property
    def service_type(self) -> str: ...

    @property
    def source_ton(self) -> int | None: ...

    @property
    def source_npi(self) -> int | None: ...

    @property
    def dest_ton(self) -> int: ...

    @property
    def dest_npi(self) -> int: ...

    @property
    def default_sender(self) -> str | None: ...

    @property
    def registered_delivery(self) -> int: ...

    @property
    def validity_s(self) -> int | None: ...


def source_address(sender: str | None, *, ton: int | None = None,
                   npi: int | None = None) -> tuple[str, int, int]:
    """``(source_addr, ton, npi)`` for a sender id (see the module docstring)."""
    if not sender:
        addr, t, n = "", TON_UNKNOWN, NPI_UNKNOWN
    elif sender[0] == "+" and sender[1:].isdigit():
        addr, t, n = sender[1:], TON_INTERNATIONAL, NPI_E164
    elif sender.isdigit():
        if len(sender) <= SHORT_CODE_MAX_DIGITS:
            addr, t, n = sender, TON_NETWORK_SPECIFIC, NPI_UNKNOWN
        else:
            addr, t, n = sender, TON_INTERNATIONAL, NPI_E164
    else:
        addr, t, n = sender, TON_ALPHANUMERIC, NPI_UNKNOWN
    return addr, (t if ton is None else ton), (n if npi is None else npi)


def relative_validity(seconds: int) -> str:
    """SMPP relative time ``YYMMDDhhmmss000R`` (§7.1.1.2) for a duration in seconds."""
    if seconds < 0:
        raise ValueError("negative validity")
    minutes, s = divmod(int(seconds), 60)
    hours, m = divmod(minutes, 60)
    days, h = divmod(hours, 24)
    # Months and years are left at 0: a day count up to 99 covers every carrier limit
    # (Puzzel clamps at 7 days, domain.md §1.3) without calendar arithmetic.
    years, d = divmod(days, 365)
    if years > 99 or d > 99:
        raise ValueError(f"validity {seconds} s does not fit the relative time format")
    return f"{years:02d}00{d:02d}{h:02d}{m:02d}{s:02d}000R"


class SubmitBuilder:
    """Builds the ``SubmitSm`` PDUs of messages for one carrier."""

    __slots__ = ("_default", "_dest_npi", "_dest_ton", "_npi", "_registered", "_service_type",
                 "_sources", "_ton", "_validity", "carrier")

    def __init__(self, carrier: CarrierSubmitSettings) -> None:
        self.carrier = carrier.name
        self._service_type = carrier.service_type
        self._ton = carrier.source_ton
        self._npi = carrier.source_npi
        self._dest_ton = carrier.dest_ton
        self._dest_npi = carrier.dest_npi
        self._registered = carrier.registered_delivery
        self._validity = ("" if carrier.validity_s is None
                          else relative_validity(carrier.validity_s))
        self._default = carrier.default_sender
        # Senders repeat (a campaign has one): cache their classification.
        self._sources: dict[str | None, tuple[str, int, int]] = {}

    def source(self, sender: str | None) -> tuple[str, int, int]:
        """``(source_addr, ton, npi)`` of a message's sender (None = the default sender)."""
        hit = self._sources.get(sender)
        if hit is None:
            if len(self._sources) > 4096:
                self._sources.clear()
            hit = self._sources[sender] = source_address(
                sender or self._default, ton=self._ton, npi=self._npi)
        return hit

    def build(self, to_e164: str, sender: str | None, data_coding: int,
              parts: Sequence[Part]) -> list[SubmitSm]:
        """One ``SubmitSm`` per part, in order."""
        src, ton, npi = self.source(sender)
        dest = to_e164[1:] if to_e164[:1] == "+" else to_e164
        out: list[SubmitSm] = []
        for part in parts:
            tlvs: tuple[Tlv, ...] = ()
            short = part.short_message
            if part.payload is not None:
                tlvs = (message_payload_tlv(part.payload),)
                short = b""
            elif part.sar is not None:
                tlvs = sar_tlvs(*part.sar)
            out.append(SubmitSm(
                service_type=self._service_type,
                source_addr_ton=ton, source_addr_npi=npi, source_addr=src,
                dest_addr_ton=self._dest_ton, dest_addr_npi=self._dest_npi,
                destination_addr=dest, esm_class=part.esm_class,
                validity_period=self._validity, registered_delivery=self._registered,
                data_coding=data_coding, short_message=short, tlvs=tlvs))
        return out
