/** Errors of the wire layer. Each carries a stable `code`; all are the peer's fault. */
export class WireError extends Error {
  override name = 'WireError';
  constructor(readonly code: 'frame_too_large' | 'bad_frame' | 'bad_datagram', message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}
