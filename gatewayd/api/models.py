"""The API's shapes for OpenAPI: what ``Message.to_json`` and the list, sync and error
bodies hold, with the RingCentral field names. Responses are built from the mailbox's
records directly; these models describe them (and the tests check one against the
other with schemathesis)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from gatewayd.api.params import MAX_ID
from gatewayd.model import (
    Availability,
    Direction,
    FaxResolution,
    MessageStatus,
    MessageType,
    Priority,
    ReadStatus,
)


class Shape(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class ErrorEntry(Shape):
    errorCode: str
    message: str
    parameterName: str | None = None
    parameterValue: str | None = None


class ErrorBody(Shape):
    errorCode: str
    message: str
    errors: list[ErrorEntry]
    parameterName: str | None = None


class CallerInfo(Shape):
    phoneNumber: str | None = None
    extensionNumber: str | None = None
    extensionId: str | None = None
    name: str | None = None
    location: str | None = None
    messageStatus: MessageStatus | None = None
    faxErrorCode: str | None = None


class AttachmentInfo(Shape):
    id: int
    uri: str
    type: str
    contentType: str
    size: int
    fileName: str | None = None
    width: int | None = None
    height: int | None = None
    vmDuration: int | None = None


class ConversationInfo(Shape):
    id: str
    uri: str


class MessageInfo(Shape):
    uri: str
    id: int
    extensionId: str
    type: MessageType
    direction: Direction
    from_: CallerInfo = Field(alias="from")
    to: list[CallerInfo]
    creationTime: datetime
    lastModifiedTime: datetime
    readStatus: ReadStatus
    priority: Priority
    availability: Availability
    messageStatus: MessageStatus
    attachments: list[AttachmentInfo]
    subject: str | None = None
    conversationId: int | None = None
    conversation: ConversationInfo | None = None
    smsSendingAttemptsCount: int | None = None
    smsDeliveryTime: datetime | None = None
    deliveryErrorCode: str | None = None
    faxResolution: FaxResolution | None = None
    faxPageCount: int | None = None
    coverIndex: int | None = None
    coverPageText: str | None = None
    faxErrorCode: str | None = None
    pgToDepartment: bool | None = None


class PagingInfo(Shape):
    perPage: int
    totalPages: int | None = None
    totalElements: int | None = None
    page: int | None = None
    pageStart: int | None = None
    pageEnd: int | None = None


class NavigationUri(Shape):
    uri: str


class NavigationInfo(Shape):
    firstPage: NavigationUri | None = None
    nextPage: NavigationUri | None = None
    previousPage: NavigationUri | None = None
    lastPage: NavigationUri | None = None


class MessageList(Shape):
    uri: str
    records: list[MessageInfo]
    paging: PagingInfo
    navigation: NavigationInfo


class BulkItem(Shape):
    resourceId: str
    status: int
    body: MessageInfo | ErrorBody


class SyncInfo(Shape):
    syncType: Literal["FSync", "ISync"]
    syncToken: str
    syncTime: datetime
    olderRecordsExist: bool = False


class SyncRecord(Shape):
    id: int
    availability: Availability


class SyncResult(Shape):
    uri: str
    records: list[MessageInfo | SyncRecord]
    syncInfo: SyncInfo


class ReadStatusBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    readStatus: ReadStatus


class PatchBody(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"minProperties": 1})
    readStatus: ReadStatus | SkipJsonSchema[None] = None
    availability: Literal["Alive"] | SkipJsonSchema[None] = None


class PhoneNumberInfo(BaseModel):
    model_config = ConfigDict(extra="ignore")
    phoneNumber: str = Field(min_length=1, max_length=32)


class SmsBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    from_: PhoneNumberInfo = Field(alias="from")
    to: list[PhoneNumberInfo] = Field(min_length=1, max_length=10)
    text: str = Field(min_length=1, max_length=1000)


class PagerParty(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "anyOf": [{"required": ["extensionId"]}, {"required": ["extensionNumber"]}]
        },
    )
    extensionId: Annotated[str, Field(max_length=19)] | SkipJsonSchema[None] = None
    extensionNumber: Annotated[str, Field(max_length=16)] | SkipJsonSchema[None] = None


class PagerBody(BaseModel):
    """``to``, ``replyOn`` or both (a reply without ``to`` answers the whole thread)."""

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={"anyOf": [{"required": ["to"]}, {"required": ["replyOn"]}]},
    )
    from_: PagerParty | SkipJsonSchema[None] = Field(default=None, alias="from")
    to: Annotated[list[PagerParty], Field(min_length=1, max_length=50)] | SkipJsonSchema[None] = (
        None
    )
    text: str = Field(min_length=1, max_length=1000)
    replyOn: Annotated[int, Field(ge=1, le=MAX_ID)] | SkipJsonSchema[None] = None


ERRORS = {
    400: {"model": ErrorBody, "description": "Invalid parameter or body (CMN-101, CMN-103)"},
    401: {"model": ErrorBody, "description": "No or unknown token (CMN-405, OAU-149)"},
    403: {"model": ErrorBody, "description": "Another extension (CMN-419)"},
    404: {"model": ErrorBody, "description": "Not found (CMN-102)"},
    429: {"model": ErrorBody, "description": "Rate limit (CMN-301), with Retry-After"},
}
