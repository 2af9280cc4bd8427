"""Sample PDU bodies for every SMPP 3.4 operation (the Rusmpp "TestInstance" idea).

``SAMPLES`` maps each body class to several instances: minimal, typical, and edge cases
(TLVs, unknown TLVs, UDH bytes, empty fields, fields at their maximum size). One generic
test round-trips all of them; other tests reuse them as seeds.
"""

from __future__ import annotations

from gateway.smpp import (
    PDU_TYPES,
    AlertNotification,
    BindReceiver,
    BindReceiverResp,
    BindTransceiver,
    BindTransceiverResp,
    BindTransmitter,
    BindTransmitterResp,
    CancelSm,
    CancelSmResp,
    DataSm,
    DataSmResp,
    DeliverSm,
    DeliverSmResp,
    DistributionList,
    EnquireLink,
    EnquireLinkResp,
    GenericNack,
    MessageState,
    NetworkType,
    Outbind,
    Pdu,
    QuerySm,
    QuerySmResp,
    ReplaceSm,
    ReplaceSmResp,
    SmeAddress,
    SubmitMulti,
    SubmitMultiResp,
    SubmitSm,
    SubmitSmResp,
    Tag,
    Tlv,
    Unbind,
    UnbindResp,
    UnsuccessSme,
    message_payload_tlv,
    message_state_tlv,
    network_error_code_tlv,
    receipted_message_id_tlv,
    sar_tlvs,
    sc_interface_version_tlv,
    tlv_u8,
)

UNKNOWN_TLV = Tlv(0x1401, b"\x00\xffvendor")  # a vendor tag (0x1400-0x3FFF), kept raw
EMPTY_TLV = Tlv(0x3FFF, b"")
UDH8 = b"\x05\x00\x03\x2a\x02\x01"  # concatenation IE, 8-bit ref 0x2a, part 1 of 2
TIME_ABS = "260509143000000+"  # YYMMDDhhmmsstnnp, SMPP 3.4 §7.1.1
TIME_REL = "000001000000000R"  # 1 day, relative
RECEIPT_TEXT = (
    b"id:0123456789 sub:001 dlvrd:001 submit date:2605091430 done date:2605091431 "
    b"stat:DELIVRD err:000 text:Hello"
)

A20 = "1" * 20  # max source_addr / destination_addr (21 with NUL)
A64 = "x" * 64  # max message_id (65 with NUL)

SAMPLES: dict[type[Pdu], list[Pdu]] = {
    BindTransmitter: [
        BindTransmitter(),
        BindTransmitter(system_id="smsgw", password="secret", system_type="MKT"),
        BindTransmitter(
            system_id="s" * 15, password="p" * 8, system_type="t" * 12, addr_ton=1, addr_npi=1,
            address_range="a" * 40,
        ),
    ],
    BindReceiver: [
        BindReceiver(system_id="smsgw", password="pw", addr_ton=1, addr_npi=1,
                     address_range="^1555"),
        BindReceiver(interface_version=0x33),
    ],
    BindTransceiver: [BindTransceiver(system_id="smsgw", password="pw"), BindTransceiver()],
    BindTransmitterResp: [
        BindTransmitterResp(system_id="SMSC"),
        BindTransmitterResp(system_id="SMSC", tlvs=(sc_interface_version_tlv(),)),
    ],
    BindReceiverResp: [BindReceiverResp(system_id="SMSC", tlvs=(sc_interface_version_tlv(),))],
    BindTransceiverResp: [
        BindTransceiverResp(system_id="s" * 15, tlvs=(sc_interface_version_tlv(), UNKNOWN_TLV)),
        BindTransceiverResp(),
    ],
    Outbind: [Outbind(system_id="SMSC", password="pw"), Outbind()],
    Unbind: [Unbind()],
    UnbindResp: [UnbindResp()],
    EnquireLink: [EnquireLink()],
    EnquireLinkResp: [EnquireLinkResp()],
    GenericNack: [GenericNack()],
    SubmitSm: [
        SubmitSm(destination_addr="447700900123"),
        SubmitSm(
            source_addr_ton=5, source_addr="ShopCo", dest_addr_ton=1, dest_addr_npi=1,
            destination_addr="447700900123", registered_delivery=1,
            short_message=b"Your code is 1234",
        ),
        SubmitSm(  # UDH part of a concatenated UCS-2 message
            service_type="CMT", source_addr_ton=1, source_addr_npi=1, source_addr="15550001111",
            dest_addr_ton=1, dest_addr_npi=1, destination_addr="15550002222",
            esm_class=0x40, data_coding=8, registered_delivery=1,
            short_message=UDH8 + "héllo €".encode("utf-16-be"),
        ),
        SubmitSm(  # SAR segmentation plus an unknown vendor TLV
            source_addr="Shop", destination_addr="15550002222",
            short_message=b"part one", tlvs=(*sar_tlvs(0xBEEF, 3, 1), UNKNOWN_TLV, EMPTY_TLV),
        ),
        SubmitSm(  # message_payload with sm_length 0
            source_addr="Shop", destination_addr="15550002222",
            tlvs=(message_payload_tlv(b"A" * 1000),),
        ),
        SubmitSm(  # every field at its maximum
            service_type="s" * 5, source_addr_ton=255, source_addr_npi=255, source_addr=A20,
            dest_addr_ton=255, dest_addr_npi=255, destination_addr=A20, esm_class=255,
            protocol_id=255, priority_flag=3, schedule_delivery_time=TIME_ABS,
            validity_period=TIME_REL, registered_delivery=255, replace_if_present_flag=1,
            data_coding=255, sm_default_msg_id=255, short_message=bytes(range(254)),
        ),
        SubmitSm(destination_addr="1", short_message=b"\x00\x00@ GSM at-signs are 0x00"),
        SubmitSm(destination_addr="\xe9\xff", source_addr="caf\xe9"),  # latin-1 octets
    ],
    SubmitSmResp: [
        SubmitSmResp(message_id="0123456789abcdef"),
        SubmitSmResp(message_id=A64),
        SubmitSmResp(message_id="f0e1d2c3-b4a5-4697-8877-665544332211"),
        SubmitSmResp(),
        SubmitSmResp(message_id="1", tlvs=(Tlv(Tag.ADDITIONAL_STATUS_INFO_TEXT, b"ok\0"),)),
    ],
    DeliverSm: [
        DeliverSm(  # delivery receipt with the standard TLVs
            source_addr_ton=1, source_addr_npi=1, source_addr="447700900123",
            dest_addr_ton=5, destination_addr="ShopCo", esm_class=0x04,
            short_message=RECEIPT_TEXT,
            tlvs=(
                receipted_message_id_tlv("0123456789"),
                message_state_tlv(MessageState.DELIVERED),
                network_error_code_tlv(NetworkType.GSM, 0),
            ),
        ),
        DeliverSm(  # MO "STOP"
            source_addr_ton=1, source_addr_npi=1, source_addr="15550002222",
            dest_addr_ton=1, dest_addr_npi=1, destination_addr="15550001111",
            short_message=b"STOP",
        ),
        DeliverSm(  # MO part with UDH, UCS-2
            source_addr="15550002222", destination_addr="15550001111", esm_class=0x40,
            data_coding=8, short_message=UDH8 + "stop ✋".encode("utf-16-be"),
        ),
        DeliverSm(  # receipt in message_payload only, plus unknown TLVs
            source_addr="15550002222", destination_addr="Shop", esm_class=0x04,
            tlvs=(message_payload_tlv(RECEIPT_TEXT), UNKNOWN_TLV, EMPTY_TLV,
                  tlv_u8(Tag.USER_MESSAGE_REFERENCE, 1)),
        ),
        DeliverSm(destination_addr=""),  # everything NULL/empty
    ],
    DeliverSmResp: [
        DeliverSmResp(),
        DeliverSmResp(message_id="ignored-but-legal"),
        DeliverSmResp(tlvs=(UNKNOWN_TLV,)),
    ],
    DataSm: [
        DataSm(destination_addr="15550002222", tlvs=(message_payload_tlv(b"hi"),)),
        DataSm(
            service_type="WAP", source_addr_ton=1, source_addr_npi=1, source_addr="7" * 64,
            dest_addr_ton=1, dest_addr_npi=1, destination_addr="8" * 64, esm_class=0x04,
            registered_delivery=1, data_coding=8,
            tlvs=(receipted_message_id_tlv("abc"), message_state_tlv(2), UNKNOWN_TLV),
        ),
    ],
    DataSmResp: [
        DataSmResp(message_id="m1"),
        DataSmResp(message_id=A64, tlvs=(Tlv(Tag.DELIVERY_FAILURE_REASON, b"\x01"),)),
        DataSmResp(),
    ],
    QuerySm: [
        QuerySm(message_id="0123456789", source_addr_ton=5, source_addr="Shop"),
        QuerySm(message_id=A64, source_addr=A20),
    ],
    QuerySmResp: [
        QuerySmResp(message_id="0123456789", final_date=TIME_ABS, message_state=2),
        QuerySmResp(message_id="1", message_state=MessageState.ENROUTE, error_code=0),
        QuerySmResp(message_id=A64, message_state=5, error_code=255),
    ],
    CancelSm: [
        CancelSm(message_id="0123456789", source_addr="Shop", destination_addr="15550002222"),
        CancelSm(service_type="CMT", source_addr_ton=5, source_addr="Shop", dest_addr_ton=1,
                 dest_addr_npi=1, destination_addr=A20),
        CancelSm(),
    ],
    CancelSmResp: [CancelSmResp()],
    ReplaceSm: [
        ReplaceSm(message_id="0123456789", source_addr="Shop", short_message=b"new text"),
        ReplaceSm(
            message_id=A64, source_addr_ton=1, source_addr_npi=1, source_addr=A20,
            schedule_delivery_time=TIME_REL, validity_period=TIME_ABS, registered_delivery=1,
            sm_default_msg_id=3, short_message=b"x" * 254,
        ),
        ReplaceSm(message_id="1"),
    ],
    ReplaceSmResp: [ReplaceSmResp()],
    SubmitMulti: [
        SubmitMulti(
            source_addr="Shop",
            dest_address=(SmeAddress(dest_addr_ton=1, dest_addr_npi=1,
                                     destination_addr="15550002222"),),
            short_message=b"hello all",
        ),
        SubmitMulti(
            service_type="CMT", source_addr_ton=5, source_addr="Shop",
            dest_address=(
                SmeAddress(dest_addr_ton=1, dest_addr_npi=1, destination_addr="15550002222"),
                DistributionList(dl_name="vip-customers"),
                SmeAddress(destination_addr=A20),
                DistributionList(dl_name="d" * 20),
            ),
            esm_class=0x40, registered_delivery=1, data_coding=8,
            schedule_delivery_time=TIME_ABS, validity_period=TIME_REL,
            short_message=UDH8 + b"\x00h\x00i", tlvs=(UNKNOWN_TLV,),
        ),
        SubmitMulti(
            dest_address=tuple(SmeAddress(destination_addr=str(i)) for i in range(254)),
            tlvs=(message_payload_tlv(b"P" * 300),),
        ),
    ],
    SubmitMultiResp: [
        SubmitMultiResp(message_id="0123456789"),
        SubmitMultiResp(
            message_id="m",
            unsuccess_sme=(
                UnsuccessSme(dest_addr_ton=1, dest_addr_npi=1, destination_addr="15550002222",
                             error_status_code=0x0B),
                UnsuccessSme(destination_addr=A20, error_status_code=0xFFFFFFFF),
            ),
        ),
        SubmitMultiResp(),
    ],
    AlertNotification: [
        AlertNotification(source_addr_ton=1, source_addr_npi=1, source_addr="15550002222",
                          esme_addr_ton=1, esme_addr_npi=1, esme_addr="15550001111",
                          tlvs=(tlv_u8(Tag.MS_AVAILABILITY_STATUS, 0),)),
        AlertNotification(source_addr="7" * 64, esme_addr="8" * 64),
    ],
}  # fmt: skip

assert set(SAMPLES) == set(PDU_TYPES.values()), "a PDU type has no samples"

ALL: list[Pdu] = [p for ps in SAMPLES.values() for p in ps]
"""Every sample, flat."""


def sample_id(pdu: Pdu) -> str:
    """A short pytest id: the class name and the sample's index within its class."""
    return f"{type(pdu).__name__}-{SAMPLES[type(pdu)].index(pdu)}"
