"""The Temporal client as this project uses it, and the custom search attributes it needs."""

from __future__ import annotations

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.common import SearchAttributeIndexedValueType, SearchAttributeKey
from temporalio.service import RPCError, RPCStatusCode, TLSConfig

from contract import SEARCH_ATTRIBUTES
from infra.codec import data_converter, payload_keys
from infra.settings import Settings


class SearchAttributesError(RuntimeError):
    """The namespace lacks search attributes and this client may not add them."""


_TYPE_NAMES = {
    SearchAttributeIndexedValueType.TEXT: "Text",
    SearchAttributeIndexedValueType.KEYWORD: "Keyword",
    SearchAttributeIndexedValueType.INT: "Int",
    SearchAttributeIndexedValueType.DOUBLE: "Double",
    SearchAttributeIndexedValueType.BOOL: "Bool",
    SearchAttributeIndexedValueType.DATETIME: "Datetime",
    SearchAttributeIndexedValueType.KEYWORD_LIST: "KeywordList",
}


def type_name(key: SearchAttributeKey) -> str:
    """The type as the CLI, `tcld` and the Web UI spell it: Keyword, KeywordList, Datetime..."""
    return _TYPE_NAMES[key.indexed_value_type]


def search_attribute_flags(keys: tuple[SearchAttributeKey, ...] = SEARCH_ATTRIBUTES) -> list[str]:
    """`--search-attribute Name=Type` arguments for `temporal server start-dev`."""
    flags = []
    for key in keys:
        flags += ["--search-attribute", f"{key.name}={type_name(key)}"]
    return flags


async def connect_client(settings: Settings, address: str | None = None, *,
                         lazy: bool = False) -> Client:
    """A client on the settings' namespace with the project's data converter (pydantic
    models, payloads sealed with the settings' keys).

    `address` is the embedded or a found `lapse dev` server's when TEMPORAL_ADDRESS is unset.
    `lazy`: connect on the first call, so that a process can start while Temporal is down.
    """
    target = address or settings.temporal_address
    if target is None:
        raise ValueError("no Temporal address: set TEMPORAL_ADDRESS or pass the embedded one")
    tls: TLSConfig | None = None
    if settings.temporal_tls_cert is not None and settings.temporal_tls_key is not None:
        tls = TLSConfig(
            client_cert=settings.temporal_tls_cert.read_bytes(),
            client_private_key=settings.temporal_tls_key.read_bytes(),
        )
    api_key = settings.temporal_api_key
    return await Client.connect(
        target,
        namespace=settings.temporal_namespace,
        api_key=api_key.get_secret_value() if api_key is not None else None,
        # None lets an API key switch TLS on by itself.
        tls=tls,
        data_converter=data_converter(payload_keys(settings)),
        lazy=lazy,
    )


async def ensure_search_attributes(
    client: Client,
    namespace: str,
    keys: tuple[SearchAttributeKey, ...] = SEARCH_ATTRIBUTES,
) -> list[str]:
    """Register the missing search attributes; return the names added.

    Checked at start-up so a missing attribute is a clear message now rather than a
    workflow task failing later. Temporal Cloud refuses this call: there the operator
    adds them once with `tcld` or the Cloud UI, and the error says which.
    """
    wanted = {key.name: IndexedValueType.ValueType(key.indexed_value_type) for key in keys}
    try:
        listed = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=namespace)
        )
        existing = dict(listed.custom_attributes)
    except RPCError as error:
        # The time-skipping test server cannot list them, but can add them.
        if error.status != RPCStatusCode.UNIMPLEMENTED:
            raise _missing_error(namespace, keys, error) from error
        existing = {}
    clashes = [
        f"{name} is {_TYPE_NAMES.get(existing[name], existing[name])}"
        for name, value_type in wanted.items()
        if name in existing and existing[name] != value_type
    ]
    if clashes:
        raise SearchAttributesError(
            f"namespace {namespace!r} has search attributes of the wrong type "
            f"({'; '.join(clashes)}); expected {_listing(keys)}"
        )
    missing = {name: value_type for name, value_type in wanted.items() if name not in existing}
    if not missing:
        return []
    try:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=namespace, search_attributes=missing)
        )
    except RPCError as error:
        if error.status == RPCStatusCode.ALREADY_EXISTS:  # another process added them first
            return []
        raise _missing_error(
            namespace, tuple(key for key in keys if key.name in missing), error
        ) from error
    return list(missing)


def _listing(keys: tuple[SearchAttributeKey, ...]) -> str:
    return ", ".join(f"{key.name} {type_name(key)}" for key in keys)


def _missing_error(
    namespace: str, keys: tuple[SearchAttributeKey, ...], error: RPCError
) -> SearchAttributesError:
    command = f"tcld namespace search-attributes add --namespace {namespace} " + " ".join(
        f"--search-attribute '{key.name}={type_name(key)}'" for key in keys
    )
    return SearchAttributesError(
        f"could not check or add search attributes on namespace {namespace!r} "
        f"({error.status.name}: {error.message}). On Temporal Cloud add them once in the "
        f"Cloud UI (Namespace > Search Attributes) or with: {command}. "
        f"Needed: {_listing(keys)}"
    )
