"""pySigma processing pipelines that map our UAL field names to each export target's ingestion.

Rules are written against the flat UAL view (``docs/rules.md``): ``Operation``, ``UserType``,
``Parameters.<Name>``, ``Item.ParentFolder.MemberUpn``, ``ModifiedProperties`` (JSON text), …
How a product stores the same record differs:

* **splunk** – Splunk Add-on for Microsoft Office 365 (``sourcetype=o365:management:activity``):
  the raw UAL JSON, auto-extracted; Name/Value lists only as the multivalue pair
  ``Parameters{}.Name`` / ``Parameters{}.Value``. Field names stay; the backend derives one
  ``dw_*`` eval field per named parameter (see ``export.py``).
* **kusto** – Microsoft Sentinel ``OfficeActivity``: same column names for the top level, but
  ``UserType`` is a name ("Admin", "DcAdmin", …), ``Parameters`` / ``Item`` are JSON columns;
  the backend derives ``dw_*`` columns with ``extend``. Entra ID records (``ModifiedProperties``)
  are not in ``OfficeActivity``.
* **elasticsearch** – Elastic's ``o365`` integration: ``event.action`` and ``o365.audit.*``
  with the Name/Value lists folded into objects (``o365.audit.Parameters.AccessRights``).
* **databricks** – the raw UAL read with ``spark.read.json``: names stay; the backend addresses
  nested columns with Spark SQL.

Each pipeline only applies to rules with ``logsource: product m365`` (all built-in rules).
Whatever a target cannot express fails the rule with a ``SigmaTransformationError`` whose
message is the reason; ``export.py`` turns it into a comment, never a crash.
"""

from __future__ import annotations

import re

from sigma.processing.conditions import (
    IncludeFieldCondition,
    LogsourceCondition,
)
from sigma.processing.pipeline import ProcessingItem, ProcessingPipeline
from sigma.processing.transformations import (
    DetectionItemFailureTransformation,
    FieldMappingTransformation,
)
from sigma.processing.transformations.values import ValueTransformation
from sigma.types import SigmaNumber, SigmaString


def m365() -> list[LogsourceCondition]:
    """A fresh rule condition per processing item (pySigma binds a condition to one pipeline)."""
    return [LogsourceCondition(product="m365")]


#: The lists of ``{Name, Value}`` pairs that rules address one name at a time.
NAME_VALUE_LISTS = ("Parameters", "OperationProperties", "ExtendedProperties")
#: Fields rules read as the whole list, as JSON text (``docs/rules.md``).
JSON_TEXT_FIELDS = ("Parameters", "OperationProperties", "ExtendedProperties", "ModifiedProperties")

#: UAL ``UserType`` numbers → the names Sentinel's ``OfficeActivity`` stores
#: (Office 365 Management Activity API schema, enum ``User type``).
USER_TYPE_NAMES = {
    0: "Regular", 1: "Reserved", 2: "Admin", 3: "DcAdmin", 4: "System", 5: "Application",
    6: "ServicePrincipal", 7: "CustomPolicy", 8: "SystemPolicy",
}

_NAME_SAFE = re.compile(r"[^0-9A-Za-z_]")


def derived_name(field: str) -> str:
    """The identifier-safe column a backend derives for a nested field.

    ``Parameters.AccessRights`` → ``dw_Parameters_AccessRights``, ``Item.ParentFolder.MemberUpn``
    → ``dw_Item_ParentFolder_MemberUpn``. ``dw_`` keeps them apart from the product's own columns.
    """
    return "dw_" + _NAME_SAFE.sub("_", field.replace(".", "_"))


def split_list_field(field: str) -> tuple[str, str] | None:
    """``Parameters.AccessRights`` → ``("Parameters", "AccessRights")``; other fields → None."""
    head, _, name = field.partition(".")
    if head in NAME_VALUE_LISTS and name:
        return head, name
    return None


def split_modified_property(field: str) -> tuple[str, str] | None:
    """``ModifiedProperties.<Name>.NewValue`` → ``(<Name>, "NewValue")``; other fields → None."""
    if field.startswith("ModifiedProperties.") and field.endswith((".NewValue", ".OldValue")):
        name, _, which = field[len("ModifiedProperties."):].rpartition(".")
        if name:
            return name, which
    return None


class UserTypeNameTransformation(ValueTransformation):
    """``UserType: 3`` → ``UserType: DcAdmin`` (Sentinel stores the enum name, not the number)."""

    def apply_value(self, field: str, val: SigmaNumber | SigmaString):
        text = str(val)
        if text.isdigit() and int(text) in USER_TYPE_NAMES:
            return SigmaString(USER_TYPE_NAMES[int(text)])
        return None


def _fail(reason: str, fields: list[str], ident: str, *, regex: bool = False) -> ProcessingItem:
    cond = IncludeFieldCondition(fields=fields, mode="re" if regex else "plain")
    return ProcessingItem(identifier=ident, transformation=DetectionItemFailureTransformation(reason),
                          rule_conditions=m365(), field_name_conditions=[cond])


def splunk_pipeline() -> ProcessingPipeline:
    """Names stay UAL names; the Splunk backend renders nested ones from ``spath``."""
    return ProcessingPipeline(name="delegatewatch: M365 UAL → Splunk o365:management:activity",
                              priority=20, items=[])


def kusto_column(field: str) -> str:
    """UAL name → the OfficeActivity column, or the ``dw_*`` column the Kusto query derives."""
    if "." in field or field in JSON_TEXT_FIELDS:
        return derived_name(field)
    return field


def kusto_pipeline(fields: set[str] | frozenset[str] = frozenset()) -> ProcessingPipeline:
    """``fields``: the rule fields to map (FieldMappingTransformation needs the names up front)."""
    mapping = {f: kusto_column(f) for f in fields if kusto_column(f) != f}
    return ProcessingPipeline(
        name="delegatewatch: M365 UAL → Microsoft Sentinel OfficeActivity", priority=20,
        items=[
            _fail("ModifiedProperties belongs to Microsoft Entra ID audit records, which the Office 365 "
                  "connector does not put in OfficeActivity (they are in AuditLogs, with another shape)",
                  [r"^ModifiedProperties(\..*)?$"], "dw_kusto_no_entra", regex=True),
            ProcessingItem(identifier="dw_kusto_usertype_names", transformation=UserTypeNameTransformation(),
                           rule_conditions=m365(), field_name_conditions=[IncludeFieldCondition(["UserType"])]),
            ProcessingItem(identifier="dw_kusto_fields", transformation=FieldMappingTransformation(mapping),
                           rule_conditions=m365()),
        ],
    )


#: Top-level UAL names that the Elastic o365 integration moves out of ``o365.audit``.
ELASTIC_FIELDS = {
    "Operation": "event.action",
    "Workload": "event.provider",
    "Id": "event.id",
    "ClientIP": "client.address",
}


def elastic_field(field: str) -> str:
    """UAL name → Elastic o365 integration field (``o365.audit.*`` keeps the vendor name)."""
    if field in ELASTIC_FIELDS:
        return ELASTIC_FIELDS[field]
    return "o365.audit." + field


def elastic_pipeline(fields: set[str] | frozenset[str] = frozenset()) -> ProcessingPipeline:
    """``fields``: the rule fields to map (FieldMappingTransformation needs the names up front)."""
    mapping = {f: elastic_field(f) for f in fields if f not in JSON_TEXT_FIELDS}
    return ProcessingPipeline(
        name="delegatewatch: M365 UAL → Elastic o365.audit", priority=20,
        items=[
            _fail("the Elastic o365 integration folds this Name/Value list into an object "
                  "(o365.audit.<List>.<Name>); the list as JSON text, which the rule searches, is not "
                  "indexed (event.original is not searchable)", list(JSON_TEXT_FIELDS), "dw_elastic_no_json_text"),
            ProcessingItem(identifier="dw_elastic_fields", transformation=FieldMappingTransformation(mapping),
                           rule_conditions=m365()),
        ],
    )


def databricks_pipeline() -> ProcessingPipeline:
    """Names stay UAL names; the Spark backend addresses nested columns itself."""
    return ProcessingPipeline(name="delegatewatch: M365 UAL → Databricks raw UAL table",
                              priority=20, items=[])
