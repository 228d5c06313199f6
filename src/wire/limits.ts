/** Named bounds of the wire layer (DESIGN.md section 3: everything has a limit). */
export const FRAME_HEADER_BYTES = 4;
/** Default largest frame a peer or client may send us. */
export const FRAME_BYTES_MAX_DEFAULT = 4 * 1024 * 1024;
/**
 * Largest first frame on an accepted connection: it must be a Hello, which is
 * well under 1 KiB, so a stranger cannot make us buffer megabytes unasked.
 */
export const HELLO_FRAME_BYTES_MAX = 16 * 1024;
/** UDP datagrams above this are not ours: a beacon is well under 1 KiB. */
export const DATAGRAM_BYTES_MAX = 1400;
export const PROTOCOL_VERSION = 1;
/** Magic that opens every grapevine datagram, so stray traffic is dropped cheaply. */
export const DATAGRAM_MAGIC = new Uint8Array([0x47, 0x56, 0x42, 0x31]); // "GVB1"
