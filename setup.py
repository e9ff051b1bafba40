"""Podium's compiled parts, both optional: the injection classifier's n-gram features
(podium/policy/_ngrams.c) and the screens' search for fixed words (podium/policy/_needles.c).
Without a C compiler the build skips them and Podium uses the Python implementations in
podium/policy/ngrams.py and podium/policy/needles.py, which give the same results."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "podium.policy._ngrams",
            ["podium/policy/_ngrams.c"],
            optional=True,
            extra_compile_args=["-O2"],
        ),
        Extension(
            "podium.policy._needles",
            ["podium/policy/_needles.c"],
            optional=True,
            extra_compile_args=["-O2"],
        ),
    ]
)
