package smi.peer;

import java.util.List;

/** The contract's topic names (docs/contract.md), without the prefix. */
final class Topics {
    static final String CPL = "cpl.entries";
    static final String INVENTORY = "smi.inventory";
    static final String REQUESTS = "duis.service-requests";
    static final String RESPONSES = "duis.device-responses";
    static final String COMMANDS = "duis.device-commands";
    static final String REJECTIONS = "duis.rejections";
    static final String CORRECTIONS = "smi.status-corrections";
    static final String ALERTS = "dcc.alerts";
    static final String DEADLETTER = "smi.deadletter";
    static final List<String> DEVICE_INPUTS = List.of(INVENTORY, REQUESTS, RESPONSES);
    static final List<String> INPUTS = List.of(CPL, INVENTORY, REQUESTS, RESPONSES);
    static final List<String> OUTPUTS = List.of(COMMANDS, REJECTIONS, CORRECTIONS, ALERTS, DEADLETTER);

    private Topics() {}
}
