"""Many methods behind one entry point, for a plugin that generates its methods (every tuner of
the installed peft) instead of writing a class for each. Families register in the entry-point
group ``peftbench.method_families``; loading one must stay cheap (no torch), so that a bad method
name is refused at once."""

from __future__ import annotations


class MethodFamily:
    #: where the members come from, shown beside each in ``peftbench list methods``
    origin: str = ""

    def names(self) -> set[str]:
        """Every name this family may offer or refuse, known without importing torch."""
        raise NotImplementedError

    def members(self) -> dict[str, type]:
        """Method classes by name, as a plain method entry point would load them."""
        raise NotImplementedError

    def refused(self) -> dict[str, str]:
        """Names this family knows but cannot offer as methods, each with a one-line reason."""
        return {}
