"""The criteria page's fieldsets, one a criterion, kept as fragments per value (``rendering.fragment``).

Rendering a criterion's WTForms fields (a text field, three checkboxes, a select, their labels and hints) cost
more than the rest of the page: each ``lazy_gettext`` label and choice is translated again at every render.
``entry_of`` gives what a criterion's fieldset shows (its number and names, the values typed or saved, each
field's errors, the role picker's groups): the fieldset is rendered once per value and language
(admin/_criterion.html), from a ``CriterionForm`` built again from that value by ``fields_of``, so the HTML is
WTForms' own. A new value, error or role name makes another key; nothing is invalidated by hand.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from portal import rendering
from portal.admin.forms import CriterionForm

FIELDS = ("structure", "roles", "include_subtree", "structure_kind", "require_valid_licence", "remove")


class CriterionEntry(NamedTuple):
    prefix: str  # the fields' names and ids start with it ("criteria-0-")
    number: int  # shown in the legend, from 1
    last: bool  # the empty block for a new criterion: no "remove" checkbox
    structure: str
    roles: tuple[int, ...]
    include_subtree: bool
    structure_kind: str
    require_valid_licence: bool
    remove: bool
    errors: tuple[tuple[str, ...], ...]  # per field of FIELDS, as shown (in the request's language)
    role_groups: tuple[Any, ...]  # list_views.role_groups: the role picker's titles and names


def entry_of(entry: Any, number: int, last: bool, role_groups: tuple[Any, ...]) -> CriterionEntry:
    """What the fieldset of ``entry`` (a FormField of the CriteriaForm) shows."""
    form = entry.form
    return CriterionEntry(
        f"{entry.name}-", number, last, form.structure.data or "", tuple(form.roles.data or ()),
        bool(form.include_subtree.data), form.structure_kind.data or "", bool(form.require_valid_licence.data),
        bool(form.remove.data),
        tuple(tuple(rendering.text(e) for e in getattr(form, name).errors) for name in FIELDS), role_groups)


def fields_of(item: CriterionEntry) -> CriterionForm:
    """The criterion's fields as WTForms renders them, built again from the kept value."""
    form = CriterionForm(prefix=item.prefix, data=dict(
        structure=item.structure, roles=list(item.roles), include_subtree=item.include_subtree,
        structure_kind=item.structure_kind, require_valid_licence=item.require_valid_licence, remove=item.remove))
    form.roles.choices = [(role_id, "") for _title, roles in item.role_groups for role_id, _name in roles]
    for name, errors in zip(FIELDS, item.errors, strict=True):
        getattr(form, name).errors = list(errors)
    return form
