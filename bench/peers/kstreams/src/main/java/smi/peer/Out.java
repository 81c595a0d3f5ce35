package smi.peer;

/** One output message: its contract topic, key, value and, for dead letters and the rejections
 *  of invalid requests, the partition of the input it answers (null: the key's partition). */
record Out(String topic, String key, byte[] value, Integer partition) {}
