/* HTTP/2 on the wire (RFC 9113), for the frame walks of capture (h2.h) and insertion
 * (h2_inject.h). */
#ifndef OTELCOL_EBPF_H2_WIRE_H
#define OTELCOL_EBPF_H2_WIRE_H


/* The 24-byte client preface "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" as little-endian words. */
#define H2_PREFACE_LEN 24
#define H2_PREFACE_0 0x5448202a20495250ULL
#define H2_PREFACE_1 0x0a0d302e322f5054ULL
#define H2_PREFACE_2 0x0a0d0a0d4d530a0dULL

/* Frame types */
#define H2_DATA 0
#define H2_HEADERS 1
#define H2_PRIORITY 2
#define H2_RST_STREAM 3
#define H2_SETTINGS 4
#define H2_PING 6
#define H2_WINDOW_UPDATE 8
#define H2_CONTINUATION 9
#define H2_MAX_TYPE 0x10 /* frame types up to PRIORITY_UPDATE; beyond: out of step */

/* Frame flags */
#define H2_END_HEADERS 0x4
#define H2_PADDED 0x8

#define H2_FRAME_FLOOR 16384 /* SETTINGS_MAX_FRAME_SIZE's floor: every peer takes it */

#endif /* OTELCOL_EBPF_H2_WIRE_H */
