"""Interop with smpplib, the independent reference codec (DESIGN.md).

(a) smpplib parses every frame we write to the same field values;
(b) we decode every frame smpplib writes to the same field values.

Fields are compared one by one by name (ours are the SMPP 3.4 names, as are smpplib's).
smpplib keeps parsed C-strings as bytes, so our ``str`` fields are compared as latin-1.

Known smpplib limits the tests route around (its bugs, not ours):
- it only knows the PDUs in ``smpplib.command.factory`` (no outbind, cancel_sm,
  replace_sm, submit_multi);
- it crashes on a standard TLV that its command class does not list (e.g.
  additional_status_info_text in submit_sm_resp), and skips unknown tags only with
  ``allow_unknown_opt_params``;
- bind PDUs always generate interface_version 0x34 unless set after construction;
- it reads integer TLVs with its own idea of the size (source_addr_subunit as 2 octets).
"""

from __future__ import annotations

from typing import Any

import pytest
import smpplib.command
import smpplib.consts
import smpplib.smpp
from smpplib.ptypes import ostr

from gateway.smpp import CommandId, Pdu, Tlv, decode, encode

from .samples import ALL, sample_id

NAMES = {cid: CommandId(cid).name.lower() for cid in CommandId}
TAG_NAMES = {v: k for k, v in smpplib.consts.OPTIONAL_PARAMS.items()}


class FakeClient:
    """What smpplib's PDU constructor wants from a client: sequence numbers."""

    sequence = 0

    def next_sequence(self) -> int:
        self.sequence += 1
        return self.sequence


def smpplib_class(pdu: Pdu) -> Any:
    try:
        return smpplib.command.factory(NAMES[pdu.command_id], client=FakeClient()).__class__
    except smpplib.command.exceptions.UnknownCommandError:
        return None


# TLVs whose smpplib declaration contradicts SMPP 3.4 §5.3.2 (size or type).
SMPPLIB_MISDECLARED = {
    ("SubmitSM", "source_addr_subunit"),  # 2 octets in smpplib, 1 in the spec
    ("DataSMResp", "delivery_failure_reason"),  # a C-string in smpplib, an Integer(1)
    ("DataSMResp", "network_error_code"),  # a C-string in smpplib, an octet string(3)
}


def smpplib_supports(pdu: Pdu) -> bool:
    cls = smpplib_class(pdu)
    if cls is None:
        return False
    for t in getattr(pdu, "tlvs", ()):
        name = TAG_NAMES.get(t.tag)
        if name is None:
            continue  # unknown to smpplib: skipped with allow_unknown_opt_params
        if name not in cls.params or (cls.__name__, name) in SMPPLIB_MISDECLARED:
            return False
        if cls.params[name].type is int and len(t.value) != cls.params[name].size:
            return False
    return True


SUPPORTED = [p for p in ALL if smpplib_supports(p)]
FIELDS_OF = {type(p): p.__struct_fields__ for p in ALL}


def test_interop_covers_every_pdu_type_smpplib_has() -> None:
    have = {type(p) for p in SUPPORTED}
    smpplib_names = {
        "bind_transmitter", "bind_transmitter_resp", "bind_receiver", "bind_receiver_resp",
        "bind_transceiver", "bind_transceiver_resp", "data_sm", "data_sm_resp",
        "generic_nack", "submit_sm", "submit_sm_resp", "deliver_sm", "deliver_sm_resp",
        "query_sm", "query_sm_resp", "unbind", "unbind_resp", "enquire_link",
        "enquire_link_resp", "alert_notification",
    }  # fmt: skip
    assert {NAMES[c.command_id] for c in have} == smpplib_names
    assert {type(p) for p in SMPPLIB_WRITABLE} == have


def expected_tlv(t: Tlv, param: Any) -> object:
    if param.type is int:
        return int.from_bytes(t.value, "big")
    if param.type is ostr:
        return t.value
    return t.value.rstrip(b"\0")  # C-string TLV; smpplib drops the NUL


@pytest.mark.parametrize("pdu", SUPPORTED, ids=sample_id)
def test_smpplib_parses_what_we_write(pdu: Pdu) -> None:
    data = encode(pdu, seq=4242, status=0)
    theirs = smpplib.smpp.parse_pdu(data, client=FakeClient(), allow_unknown_opt_params=True)
    assert theirs.command == NAMES[pdu.command_id]
    assert (theirs.sequence, theirs.status, theirs.length) == (4242, 0, len(data))
    for name in FIELDS_OF[type(pdu)]:
        ours = getattr(pdu, name)
        if name == "tlvs":
            for t in ours:
                tname = TAG_NAMES.get(t.tag)
                if tname is not None:
                    assert getattr(theirs, tname) == expected_tlv(t, theirs.params[tname]), tname
        elif isinstance(ours, str):
            assert absent_as_empty(getattr(theirs, name), b"") == ours.encode("latin-1"), name
        else:
            empty = b"" if isinstance(ours, bytes) else 0 if isinstance(ours, int) else None
            assert absent_as_empty(getattr(theirs, name), empty) == ours, name
    if hasattr(pdu, "short_message"):
        assert theirs.sm_length == len(pdu.short_message)


def absent_as_empty(value: object, empty: object) -> object:
    """smpplib stops parsing at the end of the body and leaves later fields None."""
    return empty if value is None else value


def smpplib_pdu_from(pdu: Pdu, seq: int) -> Any:
    """An smpplib PDU with our sample's values, set field by field."""
    theirs = smpplib.smpp.make_pdu(NAMES[pdu.command_id], client=FakeClient())
    theirs.sequence = seq
    for name in FIELDS_OF[type(pdu)]:
        value = getattr(pdu, name)
        if name == "tlvs":
            for t in value:
                tname = TAG_NAMES[t.tag]
                v = expected_tlv(t, theirs.params[tname])
                setattr(theirs, tname, v.decode() if isinstance(v, bytes) and theirs.params[
                    tname].type is str else v)
        else:
            setattr(theirs, name, value)
    return theirs


SMPPLIB_WRITABLE = [
    p for p in SUPPORTED
    # smpplib writes str TLVs as UTF-8 and cannot write unknown tags; an empty C-string
    # TLV it omits; we keep the samples it can represent exactly
    if all(t.tag in TAG_NAMES and t.value for t in getattr(p, "tlvs", ()))
    # smpplib truncates C-strings to its own maxima (21 for alert_notification addresses,
    # where SMPP 3.4 §4.12.1 allows 65)
    and all(
        len(getattr(p, f)) < smpplib_class(p).params[f].max
        for f in FIELDS_OF[type(p)]
        if isinstance(getattr(p, f), str) and hasattr(smpplib_class(p).params[f], "max")
    )
]  # fmt: skip


def tag_of(t: Tlv) -> int:
    return t.tag


@pytest.mark.parametrize("pdu", SMPPLIB_WRITABLE, ids=sample_id)
def test_we_decode_what_smpplib_writes(pdu: Pdu) -> None:
    data = bytes(smpplib_pdu_from(pdu, seq=77).generate())
    frame = decode(data)
    assert frame.command_id == pdu.command_id
    assert (frame.sequence_number, frame.command_status) == (77, 0)
    ours = frame.pdu
    for name in FIELDS_OF[type(pdu)]:
        if name == "tlvs":  # smpplib writes TLVs in its own order
            assert sorted(ours.tlvs, key=tag_of) == sorted(pdu.tlvs, key=tag_of)  # type: ignore[union-attr]
        else:
            assert getattr(ours, name) == getattr(pdu, name), name
    # byte-identical, too: both follow the spec layout
    assert encode(ours, seq=77) == data


def test_smpplib_error_response_without_body() -> None:
    theirs = smpplib.smpp.make_pdu("submit_sm_resp", client=FakeClient(), status=0x58)
    theirs.sequence = 3
    data = bytes(theirs.generate())
    f = decode(data)
    assert (f.command_status, f.sequence_number) == (0x58, 3)


def test_smpplib_receipt_with_tlvs() -> None:
    """A delivery receipt as smpplib writes it, TLVs by name."""
    theirs = smpplib.smpp.make_pdu(
        "deliver_sm", client=FakeClient(), source_addr="447700900123", destination_addr="Shop",
        esm_class=4, short_message=b"id:abc stat:DELIVRD err:000", receipted_message_id="abc",
        message_state=2, network_error_code=b"\x03\x00\x00",
    )  # fmt: skip
    f = decode(bytes(theirs.generate()))
    from gateway.smpp import message_state, network_error_code, receipted_message_id

    assert receipted_message_id(f.pdu) == "abc"  # type: ignore[arg-type]
    assert message_state(f.pdu) == 2  # type: ignore[arg-type]
    assert network_error_code(f.pdu) == (3, 0)  # type: ignore[arg-type]
