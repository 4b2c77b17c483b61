"""Every model family, by name: the one place that lists them.

Adding a family is one module implementing ``training.family.Family`` and one line in ``_built_in``
(or, for a family living outside the package such as the tests' tiny one, one ``register`` call).
"""

from __future__ import annotations

from eigentone.errors import EigentoneError
from training.family import Family

_FAMILIES: dict[str, Family] = {}


def _built_in() -> list[Family]:
    from training.families.diag_ssm import DiagSSM
    from training.families.koopman import Koopman
    from training.families.modal_fno import ModalFNOFamily

    return [DiagSSM(), Koopman(), ModalFNOFamily()]


def families() -> dict[str, Family]:
    """name -> family, built-in ones first."""
    if not _FAMILIES:  # register() calls this first, so the built-in families always come first
        _FAMILIES.update({f.name: f for f in _built_in()})
    return dict(_FAMILIES)


def register(family: Family) -> Family:
    """Make ``family`` known to train, export, eval and `assets build` (by ``family.name`` and ``family.command``)."""
    families()
    _FAMILIES[family.name] = family
    return family


def get_family(name: str) -> Family:
    """The family called ``name`` (its run/bundle name, e.g. "diag_ssm", or its train command, e.g. "ssm")."""
    known = families()
    if name in known:
        return known[name]
    for family in known.values():
        if family.command == name:
            return family
    raise EigentoneError(f"unknown model family {name!r} (known: {', '.join(known)})")
