"""The monitor's alert handling, as stages (after Prometheus Alertmanager's packages).

=================  =====================================================  ==================
module             stage                                                  Alertmanager
=================  =====================================================  ==================
``waves``          the alert state machine: members, firing/suppressed/   (types)
                   resolved, moved only by its methods
``suppress``       maintenance windows and silences behind one interface  ``silence/``
``inhibit``        grouping (same wave, another slice) and inhibition     ``dispatch/``,
                   (an open wave explains a slice)                        ``inhibit/``
``measure``        a wave's excess impact, the input of its level         —
``escalate``       who is paged and when (first page, escalation,         ``notify/``
                   reminders, resolution)
``emit``           the immutable alert event handed on                    —
``views``          slice masks and failure indicators the stages share    —
=================  =====================================================  ==================

:mod:`tapshield.monitor.lifecycle` runs them in order for each crossing and
bucket boundary.
"""
