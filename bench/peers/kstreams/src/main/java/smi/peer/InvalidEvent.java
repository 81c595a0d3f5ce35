package smi.peer;

/** An input message that cannot be decided; a readable request's ID, device and SR with it, so
 *  that its sender can be sent an {@code invalid-request} rejection. */
final class InvalidEvent extends Exception {
    final String requestId;
    final String deviceId;
    final String sr;

    InvalidEvent(String message) {
        this(message, null, null, null);
    }

    InvalidEvent(String message, String requestId, String deviceId, String sr) {
        super(message, null, false, false);
        this.requestId = requestId;
        this.deviceId = deviceId;
        this.sr = sr;
    }
}
