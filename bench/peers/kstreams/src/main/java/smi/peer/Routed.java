package smi.peer;

/** What the first step makes of an input message: an event for its device's partition (as an
 *  {@link Envelope}), or an output of its own (a dead letter, an invalid-request rejection). */
record Routed(byte[] envelope, Out out) {}
