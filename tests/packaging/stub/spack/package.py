# Stand-in for `spack.package`: the directives record what a recipe declares, CMakePackage
# builds -D arguments the way Spack documents them, and FakeSpec answers variant queries.
_pending = []  # directives seen since the last class definition


class Directive:
    def __init__(self, kind, args, kwargs):
        self.kind, self.args, self.kwargs = kind, args, kwargs

    def __repr__(self):
        return f"{self.kind}{self.args}{self.kwargs}"


def _directive(kind):
    def record(*args, **kwargs):
        _pending.append(Directive(kind, args, kwargs))

    record.__name__ = kind
    return record


version = _directive("version")
variant = _directive("variant")
depends_on = _directive("depends_on")
conflicts = _directive("conflicts")
requires = _directive("requires")
maintainers = _directive("maintainers")
license = _directive("license")
patch = _directive("patch")
provides = _directive("provides")
resource = _directive("resource")


def join_path(*parts):
    import os

    return os.path.join(*parts)


def run_after(*_args, **_kwargs):
    return lambda f: f


def run_before(*_args, **_kwargs):
    return lambda f: f


def on_package_attributes(**_kwargs):
    return lambda f: f


class InstallError(Exception):
    pass


class VariantValue:
    def __init__(self, value):
        self.value = value


class FakeSpec:
    """Variant values by name; understands '+v', '~v', 'v=x', 'platform=x' and '@...'."""

    def __init__(self, variants, platform="linux"):
        self.variants = {k: VariantValue(v) for k, v in variants.items()}
        self.platform = platform

    def satisfies(self, text):
        for word in text.split():
            if word.startswith("+"):
                if self.variants[word[1:]].value is not True:
                    return False
            elif word.startswith("~"):
                if self.variants[word[1:]].value is not False:
                    return False
            elif word.startswith("platform="):
                if word.split("=", 1)[1] != self.platform:
                    return False
            elif "=" in word:
                name, value = word.split("=", 1)
                if str(self.variants[name].value) != value:
                    return False
            elif not word.startswith("@"):
                raise ValueError(f"stub spec cannot evaluate {word!r}")
        return True

    def __contains__(self, text):
        return self.satisfies(text)


class PackageBase:
    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.directives = list(_pending)
        _pending.clear()
        cls.variants = {}
        for d in cls.directives:
            if d.kind == "variant":
                cls.variants[d.args[0]] = d.kwargs

    def __init__(self, spec):
        self.spec = spec
        self.run_tests = False


class CMakePackage(PackageBase):
    """The two helpers recipes use to build -D arguments, with Spack's documented output:
    booleans become BOOL ON/OFF, anything else STRING (lists joined with ';')."""

    @staticmethod
    def define(cmake_var, value):
        if isinstance(value, bool):
            kind, value = "BOOL", "ON" if value else "OFF"
        else:
            kind = "STRING"
            if isinstance(value, (list, tuple)):
                value = ";".join(str(v) for v in value)
        return f"-D{cmake_var}:{kind}={value}"

    def define_from_variant(self, cmake_var, variant=None):
        if variant is None:
            variant = cmake_var.lower()
        if variant not in self.variants:
            raise KeyError(f"{variant!r} is not a variant of {type(self).__name__}")
        return self.define(cmake_var, self.spec.variants[variant].value)


class Package(PackageBase):
    pass
