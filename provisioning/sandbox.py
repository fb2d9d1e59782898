"""Sandbox test scenarios: documented numbers and test devices whose outcome on the simulators is known.

A sandbox (onboarding) tenant orders a line with `test_scenario` and the line is given identities that
the platform's simulators treat in a published way; nothing else about the line differs, so it ends in
the state a real outcome of that kind gives (docs/sandbox.md):

- `always_succeeds`: an ordinary number; the eSIM is ordered for the test device that installs it.
- `provisioning_fails`: a number of the tenant's test range (the last 100 lines of its block, never
  given to ordinary lines); the simulated host network refuses to provision any such number
  (403 `test_msisdn_refused`), so the line ends `failed` with `network_test_msisdn_refused`.
- `esim_download_fails`: an ordinary number; the eSIM is ordered for the test device whose installation
  fails, so once the device downloads it, the SM-DP+ reports the failure (SGP.22 8.2.10 / 4.2) and the
  profile ends in `error` with an `esim.download_failed` event.
"""

from __future__ import annotations

from dataclasses import dataclass

from mvne.esim.identifiers import TEST_DEVICE_EID_INSTALL_FAILS, TEST_DEVICE_EID_INSTALLS

ALWAYS_SUCCEEDS = "always_succeeds"
PROVISIONING_FAILS = "provisioning_fails"
ESIM_DOWNLOAD_FAILS = "esim_download_fails"
SCENARIOS = (ALWAYS_SUCCEEDS, PROVISIONING_FAILS, ESIM_DOWNLOAD_FAILS)

# Every numbering plan ends in 4 line digits; lines 9900-9999 of each block are its test numbers.
LINE_DIGITS = 4
FIRST_TEST_LINE = 9900
TEST_LINES = 100

# The device a scenario's eSIM is ordered for (ES2+ DownloadOrder binds the profile to its EID).
SCENARIO_EIDS = {
    ALWAYS_SUCCEEDS: TEST_DEVICE_EID_INSTALLS,
    ESIM_DOWNLOAD_FAILS: TEST_DEVICE_EID_INSTALL_FAILS,
}


def is_test_msisdn(msisdn: str) -> bool:
    """Whether the number is a sandbox test number: its last four digits are 9900 to 9999."""
    tail = msisdn[-LINE_DIGITS:]
    return tail.isdigit() and FIRST_TEST_LINE <= int(tail) < FIRST_TEST_LINE + TEST_LINES


@dataclass(frozen=True)
class Scenario:
    """One published scenario, as GET /v1/sandbox/test-numbers shows it."""

    name: str
    behaviour: str
    outcome: str


SCENARIO_DOCS = (
    Scenario(
        ALWAYS_SUCCEEDS,
        "The line gets an ordinary number; its eSIM is ordered for the test device that installs it.",
        "The line becomes active; a device download (simulated) installs the profile: esim.downloaded, then "
        "esim.installed.",
    ),
    Scenario(
        PROVISIONING_FAILS,
        "The line gets one of the tenant's test numbers, which the simulated host network refuses to provision.",
        "The line ends failed with failure_code network_test_msisdn_refused, and a subscription.failed event.",
    ),
    Scenario(
        ESIM_DOWNLOAD_FAILS,
        "The line gets an ordinary number; its eSIM is ordered for the test device whose installation fails.",
        "The line becomes active; when the device downloads the profile (simulated), the SM-DP+ reports the "
        "failure: the eSIM state becomes error, with an esim.download_failed event.",
    ),
)
