"""What a company pays for AI under each architecture, from its own numbers.

``prices`` (the price table and scenarios), ``workloads`` (what is asked, from a YAML file,
a usage export or Podium's traces), ``usage`` (reading usage exports), ``project`` (the four
architectures), ``memo`` and ``charts`` (the diagnostic memo). ``config`` holds the
``costs:`` section of podium.yaml and imports only pydantic, so podium.config can use it.
"""
