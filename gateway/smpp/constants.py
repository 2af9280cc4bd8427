"""SMPP 3.4 protocol constants: the spec tables as enums, each citing its section.

Section numbers refer to "Short Message Peer to Peer Protocol Specification v3.4,
Issue 1.2" (SMPP 3.4). This module is the one owner of these facts (STYLE.md rule 2);
everything else asks it.

PDU fields are typed ``int`` rather than these enums: carriers send values outside the
tables (vendor statuses 0x400-0x4FF, data_coding 0xF0-0xFF message classes, ...), and
building an enum member per field on the hot decode path would cost more than the field.
The enums are ``IntEnum``/``IntFlag`` so they can be passed wherever an ``int`` goes.
"""

from __future__ import annotations

import enum
from typing import Final

__all__ = [
    "GENERIC_NACK",
    "HEADER_LENGTH",
    "INTERFACE_VERSION",
    "MAX_SEQUENCE_NUMBER",
    "RESPONSE_BIT",
    "CommandId",
    "CommandStatus",
    "DataCoding",
    "DestFlag",
    "EsmClass",
    "MessageState",
    "NetworkType",
    "Npi",
    "RegisteredDelivery",
    "RetryClass",
    "Tag",
    "Ton",
    "is_receipt",
    "is_response",
    "response_id",
    "retry_class",
]

HEADER_LENGTH: Final = 16
"""SMPP 3.4 §3.2: command_length, command_id, command_status, sequence_number (4 x u32)."""

RESPONSE_BIT: Final = 0x80000000
"""SMPP 3.4 §5.1.2.1: a response's command_id is its request's id with bit 31 set."""

GENERIC_NACK: Final = 0x80000000

INTERFACE_VERSION: Final = 0x34
"""SMPP 3.4 §5.2.4: send 0x34 in binds; SMSCs assume 3.3 (no TLVs) otherwise."""

MAX_SEQUENCE_NUMBER: Final = 0x7FFFFFFF
"""SMPP 3.4 §5.1.4: sequence numbers run 0x00000001-0x7FFFFFFF."""


class CommandId(enum.IntEnum):
    """command_id values, SMPP 3.4 §5.1.2.1 (Table 5-1)."""

    GENERIC_NACK = 0x80000000
    BIND_RECEIVER = 0x00000001
    BIND_RECEIVER_RESP = 0x80000001
    BIND_TRANSMITTER = 0x00000002
    BIND_TRANSMITTER_RESP = 0x80000002
    QUERY_SM = 0x00000003
    QUERY_SM_RESP = 0x80000003
    SUBMIT_SM = 0x00000004
    SUBMIT_SM_RESP = 0x80000004
    DELIVER_SM = 0x00000005
    DELIVER_SM_RESP = 0x80000005
    UNBIND = 0x00000006
    UNBIND_RESP = 0x80000006
    REPLACE_SM = 0x00000007
    REPLACE_SM_RESP = 0x80000007
    CANCEL_SM = 0x00000008
    CANCEL_SM_RESP = 0x80000008
    BIND_TRANSCEIVER = 0x00000009
    BIND_TRANSCEIVER_RESP = 0x80000009
    OUTBIND = 0x0000000B
    ENQUIRE_LINK = 0x00000015
    ENQUIRE_LINK_RESP = 0x80000015
    SUBMIT_MULTI = 0x00000021
    SUBMIT_MULTI_RESP = 0x80000021
    ALERT_NOTIFICATION = 0x00000102
    DATA_SM = 0x00000103
    DATA_SM_RESP = 0x80000103


def is_response(command_id: int) -> bool:
    """True for response ids (bit 31 set), generic_nack included (SMPP 3.4 §5.1.2.1)."""
    return bool(command_id & RESPONSE_BIT)


def response_id(command_id: int) -> int:
    """The response command_id for a request id (SMPP 3.4 §5.1.2.1)."""
    return command_id | RESPONSE_BIT


class CommandStatus(enum.IntEnum):
    """command_status / error codes, SMPP 3.4 §5.1.3 (Table 5-2).

    Names drop the ``ESME_`` prefix of the spec (``ESME_RTHROTTLED`` -> ``RTHROTTLED``).
    0x400-0x4FF are reserved for SMSC vendors and 0x100-0x3FF for SMPP extensions; those
    stay plain ints wherever they appear.
    """

    ROK = 0x00
    RINVMSGLEN = 0x01
    RINVCMDLEN = 0x02
    RINVCMDID = 0x03
    RINVBNDSTS = 0x04
    RALYBND = 0x05
    RINVPRTFLG = 0x06
    RINVREGDLVFLG = 0x07
    RSYSERR = 0x08
    RINVSRCADR = 0x0A
    RINVDSTADR = 0x0B
    RINVMSGID = 0x0C
    RBINDFAIL = 0x0D
    RINVPASWD = 0x0E
    RINVSYSID = 0x0F
    RCANCELFAIL = 0x11
    RREPLACEFAIL = 0x13
    RMSGQFUL = 0x14
    RINVSERTYP = 0x15
    RINVNUMDESTS = 0x33
    RINVDLNAME = 0x34
    RINVDESTFLAG = 0x40
    RINVSUBREP = 0x42
    RINVESMCLASS = 0x43
    RCNTSUBDL = 0x44
    RSUBMITFAIL = 0x45
    RINVSRCTON = 0x48
    RINVSRCNPI = 0x49
    RINVDSTTON = 0x50
    RINVDSTNPI = 0x51
    RINVSYSTYP = 0x53
    RINVREPFLAG = 0x54
    RINVNUMMSGS = 0x55
    RTHROTTLED = 0x58
    RINVSCHED = 0x61
    RINVEXPIRY = 0x62
    RINVDFTMSGID = 0x63
    RX_T_APPN = 0x64
    RX_P_APPN = 0x65
    RX_R_APPN = 0x66
    RQUERYFAIL = 0x67
    RINVOPTPARSTREAM = 0xC0
    ROPTPARNOTALLWD = 0xC1
    RINVPARLEN = 0xC2
    RMISSINGOPTPARAM = 0xC3
    RINVOPTPARAMVAL = 0xC4
    RDELIVERYFAILURE = 0xFE
    RUNKNOWNERR = 0xFF


class RetryClass(enum.StrEnum):
    """What a command_status means for the message that got it (domain.md §1.6).

    Values are stable lower-case strings, usable as metric labels.
    """

    OK = "ok"
    THROTTLED = "throttled"  # back off and cut TPS, then retry
    TEMPORARY = "temporary"  # back off, retry
    AMBIGUOUS = "ambiguous"  # unknown fate: a few retries, then fail
    PERMANENT = "permanent"  # fix the PDU, the number or the config; never retry as is
    SESSION = "session"  # our bind state is wrong: rebind correctly
    BIND = "bind"  # credentials / bind refused: alert, exponential backoff


_S = CommandStatus
_RETRY: Final[dict[int, RetryClass]] = {
    # Kannel treats RMSGQFUL, RTHROTTLED, RX_T_APPN and RSYSERR as temporary; NowSMS retries
    # RTHROTTLED and RMSGQFUL for up to 24 h (domain.md §1.6).
    _S.ROK: RetryClass.OK,
    _S.RTHROTTLED: RetryClass.THROTTLED,
    _S.RMSGQFUL: RetryClass.THROTTLED,
    _S.RSYSERR: RetryClass.TEMPORARY,
    _S.RX_T_APPN: RetryClass.TEMPORARY,
    _S.RSUBMITFAIL: RetryClass.AMBIGUOUS,
    _S.RDELIVERYFAILURE: RetryClass.AMBIGUOUS,
    _S.RUNKNOWNERR: RetryClass.AMBIGUOUS,
    _S.RINVBNDSTS: RetryClass.SESSION,
    _S.RALYBND: RetryClass.SESSION,
    _S.RBINDFAIL: RetryClass.BIND,
    _S.RINVPASWD: RetryClass.BIND,
    _S.RINVSYSID: RetryClass.BIND,
}
for _status in CommandStatus:
    _RETRY.setdefault(int(_status), RetryClass.PERMANENT)
del _status


def retry_class(status: int) -> RetryClass:
    """Classify a command_status (domain.md §1.6).

    Every standard code not named as throttled/temporary/ambiguous/session/bind is
    PERMANENT. Codes outside the SMPP 3.4 table (vendor 0x400-0x4FF, reserved ranges) are
    AMBIGUOUS: we cannot know whether a retry helps, so allow a few and then fail.
    """
    return _RETRY.get(status, RetryClass.AMBIGUOUS)


class Ton(enum.IntEnum):
    """Type of Number, SMPP 3.4 §5.2.5."""

    UNKNOWN = 0
    INTERNATIONAL = 1
    NATIONAL = 2
    NETWORK_SPECIFIC = 3
    SUBSCRIBER_NUMBER = 4
    ALPHANUMERIC = 5
    ABBREVIATED = 6


class Npi(enum.IntEnum):
    """Numbering Plan Indicator, SMPP 3.4 §5.2.6."""

    UNKNOWN = 0
    ISDN = 1  # E.163 / E.164
    DATA = 3  # X.121
    TELEX = 4  # F.69
    LAND_MOBILE = 6  # E.212
    NATIONAL = 8
    PRIVATE = 9
    ERMES = 10
    INTERNET = 14  # IP
    WAP = 18  # WAP client id


class DataCoding(enum.IntEnum):
    """data_coding, SMPP 3.4 §5.2.19. Values 0xC0-0xFF are GSM 03.38 coding groups."""

    SMSC_DEFAULT = 0x00  # usually GSM 03.38, but the SMSC decides
    IA5 = 0x01  # IA5 (CCITT T.50) / ASCII
    OCTET_UNSPECIFIED = 0x02  # 8-bit binary
    LATIN_1 = 0x03  # ISO-8859-1
    OCTET_UNSPECIFIED_2 = 0x04  # 8-bit binary
    JIS = 0x05  # X 0208-1990
    CYRILLIC = 0x06  # ISO-8859-5
    LATIN_HEBREW = 0x07  # ISO-8859-8
    UCS2 = 0x08  # ISO/IEC-10646; send UTF-16BE
    PICTOGRAM = 0x09
    ISO_2022_JP = 0x0A  # music codes
    EXTENDED_KANJI_JIS = 0x0D  # X 0212-1990
    KS_C_5601 = 0x0E


class EsmClass(enum.IntFlag):
    """esm_class bits, SMPP 3.4 §5.2.12.

    Bits 1-0 are the messaging mode, bits 5-2 the message type, bits 7-6 GSM features.
    The mode and type "fields" are small integers, not independent bits, hence the masks.
    """

    DEFAULT = 0x00
    # bits 1-0: messaging mode (submit_sm, submit_multi, data_sm)
    DATAGRAM_MODE = 0x01
    FORWARD_MODE = 0x02  # transaction mode
    STORE_AND_FORWARD_MODE = 0x03
    MODE_MASK = 0x03
    # bits 5-2: message type
    DELIVERY_RECEIPT = 0x04  # deliver_sm: SMSC delivery receipt
    DELIVERY_ACK = 0x08  # SME delivery acknowledgement (ESME delivery ack in submit_sm)
    MANUAL_ACK = 0x10  # SME manual/user acknowledgement
    CONVERSATION_ABORT = 0x18  # deliver_sm, Korean CDMA
    INTERMEDIATE_NOTIFICATION = 0x20  # deliver_sm
    TYPE_MASK = 0x3C
    # bits 7-6: GSM network specific features
    UDHI = 0x40  # short_message starts with a User Data Header
    REPLY_PATH = 0x80


def is_receipt(esm_class: int) -> bool:
    """True for an SMSC delivery receipt: message type 0x04, whatever UDHI says (§5.2.12)."""
    return (esm_class & 0x3C) == 0x04


class RegisteredDelivery(enum.IntFlag):
    """registered_delivery bits, SMPP 3.4 §5.2.17."""

    NONE = 0x00
    # bits 1-0: SMSC delivery receipt
    RECEIPT_SUCCESS_OR_FAILURE = 0x01
    RECEIPT_FAILURE = 0x02
    RECEIPT_MASK = 0x03
    # bits 3-2: SME originated acknowledgement
    SME_DELIVERY_ACK = 0x04
    SME_MANUAL_ACK = 0x08
    SME_ACK_MASK = 0x0C
    # bit 4
    INTERMEDIATE_NOTIFICATION = 0x10


class MessageState(enum.IntEnum):
    """message_state, SMPP 3.4 §5.2.28 (TLV 0x0427 and query_sm_resp).

    SCHEDULED (0) and SKIPPED (9) are SMPP 5.0 values; 3.4 SMSCs report ENROUTE instead
    of SCHEDULED, but some send them anyway (domain.md §1.7).
    """

    SCHEDULED = 0
    ENROUTE = 1
    DELIVERED = 2
    EXPIRED = 3
    DELETED = 4
    UNDELIVERABLE = 5
    ACCEPTED = 6
    UNKNOWN = 7
    REJECTED = 8
    SKIPPED = 9


class DestFlag(enum.IntEnum):
    """submit_multi dest_flag, SMPP 3.4 §5.2.25."""

    SME_ADDRESS = 1
    DISTRIBUTION_LIST = 2


class NetworkType(enum.IntEnum):
    """First octet of the network_error_code TLV, SMPP 3.4 §5.3.2.31."""

    ANSI_136_ACCESS_DENIED = 1
    IS_95_ACCESS_DENIED = 2
    GSM = 3
    ANSI_136_CAUSE = 4
    IS_95_CAUSE = 5
    ANSI_41_ERROR = 6
    SMPP_ERROR = 7  # the 2-octet code is a command_status
    MC_SPECIFIC = 8


class Tag(enum.IntEnum):
    """Standard TLV (optional parameter) tags, SMPP 3.4 §5.3.2 (Table 5-6)."""

    DEST_ADDR_SUBUNIT = 0x0005  # §5.3.2.1
    DEST_NETWORK_TYPE = 0x0006  # §5.3.2.3
    DEST_BEARER_TYPE = 0x0007  # §5.3.2.5
    DEST_TELEMATICS_ID = 0x0008  # §5.3.2.7
    SOURCE_ADDR_SUBUNIT = 0x000D  # §5.3.2.2
    SOURCE_NETWORK_TYPE = 0x000E  # §5.3.2.4
    SOURCE_BEARER_TYPE = 0x000F  # §5.3.2.6
    SOURCE_TELEMATICS_ID = 0x0010  # §5.3.2.8
    QOS_TIME_TO_LIVE = 0x0017  # §5.3.2.9
    PAYLOAD_TYPE = 0x0019  # §5.3.2.10
    ADDITIONAL_STATUS_INFO_TEXT = 0x001D  # §5.3.2.11
    RECEIPTED_MESSAGE_ID = 0x001E  # §5.3.2.12
    MS_MSG_WAIT_FACILITIES = 0x0030  # §5.3.2.13
    PRIVACY_INDICATOR = 0x0201  # §5.3.2.14
    SOURCE_SUBADDRESS = 0x0202  # §5.3.2.15
    DEST_SUBADDRESS = 0x0203  # §5.3.2.16
    USER_MESSAGE_REFERENCE = 0x0204  # §5.3.2.17
    USER_RESPONSE_CODE = 0x0205  # §5.3.2.18
    SOURCE_PORT = 0x020A  # §5.3.2.20
    DESTINATION_PORT = 0x020B  # §5.3.2.21
    SAR_MSG_REF_NUM = 0x020C  # §5.3.2.22
    LANGUAGE_INDICATOR = 0x020D  # §5.3.2.19
    SAR_TOTAL_SEGMENTS = 0x020E  # §5.3.2.23
    SAR_SEGMENT_SEQNUM = 0x020F  # §5.3.2.24
    SC_INTERFACE_VERSION = 0x0210  # §5.3.2.25
    CALLBACK_NUM_PRES_IND = 0x0302  # §5.3.2.37
    CALLBACK_NUM_ATAG = 0x0303  # §5.3.2.38
    NUMBER_OF_MESSAGES = 0x0304  # §5.3.2.39
    CALLBACK_NUM = 0x0381  # §5.3.2.36
    DPF_RESULT = 0x0420  # §5.3.2.28
    SET_DPF = 0x0421  # §5.3.2.29
    MS_AVAILABILITY_STATUS = 0x0422  # §5.3.2.30
    NETWORK_ERROR_CODE = 0x0423  # §5.3.2.31
    MESSAGE_PAYLOAD = 0x0424  # §5.3.2.32
    DELIVERY_FAILURE_REASON = 0x0425  # §5.3.2.33
    MORE_MESSAGES_TO_SEND = 0x0426  # §5.3.2.34
    MESSAGE_STATE = 0x0427  # §5.3.2.35
    USSD_SERVICE_OP = 0x0501  # §5.3.2.44
    DISPLAY_TIME = 0x1201  # §5.3.2.26
    SMS_SIGNAL = 0x1203  # §5.3.2.40
    MS_VALIDITY = 0x1204  # §5.3.2.27
    ALERT_ON_MESSAGE_DELIVERY = 0x130C  # §5.3.2.41
    ITS_REPLY_TYPE = 0x1380  # §5.3.2.42
    ITS_SESSION_INFO = 0x1383  # §5.3.2.43
