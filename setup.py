"""The one compiled part of Podium, optional: the injection classifier's n-gram features
(podium/policy/_ngrams.c). Without a C compiler the build skips it and Podium uses the numpy
implementation in podium/policy/ngrams.py, which computes the same features."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "podium.policy._ngrams",
            ["podium/policy/_ngrams.c"],
            optional=True,
            extra_compile_args=["-O2"],
        )
    ]
)
