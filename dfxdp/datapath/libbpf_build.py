"""cffi build script for `dfxdp._libbpf`: libbpf (the OS's libbpf1) plus the map structs.

API mode, so the C compiler resolves libbpf's option structs and checks every
map struct cffi parses from maps/*.h against the real layout: the headers stay
the single definition of what goes into a map.
"""
from __future__ import annotations

import pathlib
import re

from cffi import FFI

ROOT = pathlib.Path(__file__).resolve().parents[2]


def maps_dir() -> pathlib.Path:
    """maps/ in a source tree, else the copy shipped inside the package."""
    src = ROOT / "maps"
    return src if src.is_dir() else pathlib.Path(__file__).resolve().parents[1] / "_bpf" / "maps"


_SIMPLE_DEFINE = re.compile(r"^#define\s+[A-Z_][A-Z0-9_]*\s+(0x[0-9a-fA-F]+|\d+)\s*(/\*.*\*/)?\s*$")


def maps_cdef(directory: pathlib.Path) -> str:
    """The maps headers as cffi reads them: preprocessor lines other than
    integer #defines dropped (include guards, #include)."""
    out = []
    for header in sorted(directory.glob("*.h")):
        for line in header.read_text().splitlines():
            if line.lstrip().startswith("#") and not _SIMPLE_DEFINE.match(line.strip()):
                continue
            out.append(_SIMPLE_DEFINE.match(line.strip()) and line.split("/*")[0] or line)
    return "\n".join(out)


LIBBPF_CDEF = r"""
typedef uint8_t __u8; typedef uint16_t __u16; typedef uint32_t __u32; typedef uint64_t __u64;
typedef int32_t __s32; typedef int64_t __s64;
typedef uint16_t __be16; typedef uint32_t __be32; typedef uint16_t __sum16;

struct bpf_object; struct bpf_program; struct bpf_map;

struct bpf_object_open_opts {
    size_t sz;
    const char *object_name;
    const char *pin_root_path;
    ...;
};
struct bpf_test_run_opts {
    size_t sz;
    const void *data_in; void *data_out; __u32 data_size_in; __u32 data_size_out;
    const void *ctx_in; void *ctx_out; __u32 ctx_size_in; __u32 ctx_size_out;
    __u32 retval; int repeat; __u32 duration; __u32 flags; __u32 cpu; __u32 batch_size;
};
struct bpf_map_batch_opts { size_t sz; __u64 elem_flags; __u64 flags; };
struct bpf_xdp_attach_opts { size_t sz; int old_prog_fd; ...; };
struct bpf_xdp_query_opts { size_t sz; __u32 prog_id; __u32 drv_prog_id; __u32 hw_prog_id;
                            __u32 skb_prog_id; __u8 attach_mode; ...; };
struct xdp_md { __u32 data; __u32 data_end; __u32 data_meta; __u32 ingress_ifindex;
                __u32 rx_queue_index; __u32 egress_ifindex; };
struct bpf_map_info { __u32 type; __u32 id; __u32 key_size; __u32 value_size; __u32 max_entries;
                      __u32 map_flags; char name[16]; __u32 btf_id; __u32 btf_key_type_id;
                      __u32 btf_value_type_id; ...; };
struct btf;
struct btf_type { __u32 name_off; __u32 info; union { __u32 size; __u32 type; }; };
struct btf *btf__load_from_kernel_by_id(__u32 id);
void btf__free(struct btf *btf);
const struct btf_type *btf__type_by_id(const struct btf *btf, __u32 id);
const char *btf__name_by_offset(const struct btf *btf, __u32 offset);
__s64 btf__resolve_size(const struct btf *btf, __u32 type_id);
struct bpf_prog_info { __u32 type; __u32 id; char name[16]; ...; };

struct bpf_object *bpf_object__open_file(const char *path, const struct bpf_object_open_opts *opts);
int bpf_object__load(struct bpf_object *obj);
void bpf_object__close(struct bpf_object *obj);
struct bpf_program *bpf_object__next_program(const struct bpf_object *obj, struct bpf_program *prog);
struct bpf_map *bpf_object__next_map(const struct bpf_object *obj, const struct bpf_map *map);
const char *bpf_program__name(const struct bpf_program *prog);
int bpf_program__fd(const struct bpf_program *prog);
int bpf_program__pin(struct bpf_program *prog, const char *path);
enum bpf_prog_type { BPF_PROG_TYPE_XDP, ... };
enum bpf_prog_type bpf_program__type(const struct bpf_program *prog);
const char *bpf_program__section_name(const struct bpf_program *prog);
int bpf_program__set_autoload(struct bpf_program *prog, bool autoload);
const char *bpf_map__name(const struct bpf_map *map);
int bpf_map__fd(const struct bpf_map *map);
int bpf_map__set_pin_path(struct bpf_map *map, const char *path);
const char *bpf_map__pin_path(const struct bpf_map *map);
int bpf_map__unpin(struct bpf_map *map, const char *path);

int bpf_map_update_elem(int fd, const void *key, const void *value, __u64 flags);
int bpf_map_lookup_elem(int fd, const void *key, void *value);
int bpf_map_delete_elem(int fd, const void *key);
int bpf_map_lookup_and_delete_elem(int fd, const void *key, void *value);
int bpf_map_get_next_key(int fd, const void *key, void *next_key);
int bpf_map_lookup_batch(int fd, void *in_batch, void *out_batch, void *keys, void *values,
                         __u32 *count, const struct bpf_map_batch_opts *opts);
int bpf_map_update_batch(int fd, const void *keys, const void *values, __u32 *count,
                         const struct bpf_map_batch_opts *opts);
int bpf_map_delete_batch(int fd, const void *keys, __u32 *count, const struct bpf_map_batch_opts *opts);
int bpf_map_create(int map_type, const char *map_name, __u32 key_size, __u32 value_size,
                   __u32 max_entries, const void *opts);
int bpf_map_get_fd_by_id(__u32 id);
int bpf_obj_pin(int fd, const char *pathname);
int bpf_obj_get(const char *pathname);
int bpf_obj_get_info_by_fd(int bpf_fd, void *info, __u32 *info_len);
int bpf_prog_get_fd_by_id(__u32 id);
int bpf_prog_test_run_opts(int prog_fd, struct bpf_test_run_opts *opts);
int bpf_xdp_attach(int ifindex, int prog_fd, __u32 flags, const struct bpf_xdp_attach_opts *opts);
int bpf_xdp_detach(int ifindex, __u32 flags, const struct bpf_xdp_attach_opts *opts);
int bpf_xdp_query(int ifindex, int flags, struct bpf_xdp_query_opts *opts);
int libbpf_num_possible_cpus(void);

struct ring_buffer;
void ring_buffer__free(struct ring_buffer *rb);
int ring_buffer__poll(struct ring_buffer *rb, int timeout_ms);
int libbpf_strerror(int err, char *buf, size_t size);

#define XDP_FLAGS_UPDATE_IF_NOEXIST 1
#define XDP_FLAGS_SKB_MODE 2
#define XDP_FLAGS_DRV_MODE 4
#define XDP_FLAGS_REPLACE 16
#define BPF_ANY 0
#define BPF_NOEXIST 1
#define BPF_EXIST 2
#define BPF_FS_MAGIC 0xcafe4a11

/* rtnetlink messages (controller/netlink.py): the agent's links, link events, neighbours, routes */
struct nlmsghdr { __u32 nlmsg_len; __u16 nlmsg_type; __u16 nlmsg_flags; __u32 nlmsg_seq; __u32 nlmsg_pid; };
struct nlmsgerr { int error; ...; };
struct rtattr { unsigned short rta_len; unsigned short rta_type; };
struct ifinfomsg { unsigned char ifi_family; unsigned short ifi_type; int ifi_index; unsigned ifi_flags;
                   unsigned ifi_change; ...; };
struct rtmsg { unsigned char rtm_family; unsigned char rtm_dst_len; unsigned char rtm_src_len; unsigned char rtm_tos;
               unsigned char rtm_table; unsigned char rtm_protocol; unsigned char rtm_scope; unsigned char rtm_type;
               unsigned rtm_flags; };
struct ndmsg { __u8 ndm_family; int ndm_ifindex; __u16 ndm_state; __u8 ndm_flags; __u8 ndm_type; ...; };

/* Our small C helpers (see set_source). */
extern "Python" void dfxdp_libbpf_log(int level, const char *msg);
extern "Python" int dfxdp_ring_sample(void *ctx, void *data, size_t size);
int dfxdp_ring_buffer_new(int map_fd, void *ctx, struct ring_buffer **out);
int dfxdp_packet_send(int fd, int ifindex, const void *frame, size_t len);
void dfxdp_install_printer(void);
long dfxdp_fs_magic(const char *path);
int dfxdp_mount_bpffs(const char *path);
struct bpf_map_def_view { __u32 type; __u32 key_size; __u32 value_size; __u32 max_entries; __u32 map_flags; };
void dfxdp_map_def(const struct bpf_map *map, struct bpf_map_def_view *out);
struct dfxdp_prog_view { __u32 type; __u32 id; __u32 gpl_compatible; char name[16]; };
int dfxdp_prog_info(int fd, struct dfxdp_prog_view *out);
__u32 dfxdp_fnv1a32(const unsigned char *data, size_t len);
void dfxdp_release_free_memory(void);
"""

C_SOURCE = r"""
#include <stdarg.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <sys/vfs.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <string.h>
#include <linux/if_packet.h>
#include <linux/types.h>
#include <linux/bpf.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/neighbour.h>
#include <bpf/libbpf.h>
#include <bpf/bpf.h>
#include <bpf/btf.h>
#ifndef BPF_FS_MAGIC
#define BPF_FS_MAGIC 0xcafe4a11
#endif
""" + "\n".join(f'#include "{h.name}"' for h in sorted(maps_dir().glob("*.h"))) + r"""

static void dfxdp_libbpf_log(int level, const char *msg);

/* libbpf logs through a printf-style callback; format it here, since Python
 * cannot consume a va_list, and hand Python the finished line. */
static int dfxdp_printer(enum libbpf_print_level level, const char *fmt, va_list ap)
{
    char *msg = NULL;
    if (vasprintf(&msg, fmt, ap) < 0)
        return 0;
    dfxdp_libbpf_log((int)level, msg);
    free(msg);
    return 0;
}

static void dfxdp_install_printer(void) { libbpf_set_print(dfxdp_printer); }

/* Hand the C heap's free pages back to the system (glibc keeps them after a burst of
 * allocations: an agent's full pass makes and frees hundreds of MiB at 100,000 ports). */
static void dfxdp_release_free_memory(void)
{
#ifdef __GLIBC__
    malloc_trim(0);
#endif
}

/* FNV-1a 32 of `len` bytes: stage_dns' name hash, for the agent's 100,000s of names
 * (a byte loop in Python costs microseconds a name). */
static __u32 dfxdp_fnv1a32(const unsigned char *data, size_t len)
{
    __u32 h = 2166136261u;

    for (size_t i = 0; i < len; i++)
        h = (h ^ data[i]) * 16777619u;
    return h;
}

static int dfxdp_ring_sample(void *ctx, void *data, size_t size);

/* A ring buffer reader whose every record goes to dfxdp_ring_sample (Python) with `ctx`;
 * 0 or -errno. */
static int dfxdp_ring_buffer_new(int map_fd, void *ctx, struct ring_buffer **out)
{
    *out = ring_buffer__new(map_fd, dfxdp_ring_sample, ctx, NULL);
    return *out ? 0 : -errno;
}

/* Send one Ethernet frame out of `ifindex` on an AF_PACKET socket: 0 or -errno.
 * Python's socket module addresses AF_PACKET by interface name only. */
static int dfxdp_packet_send(int fd, int ifindex, const void *frame, size_t len)
{
    struct sockaddr_ll to = { .sll_family = AF_PACKET, .sll_ifindex = ifindex, .sll_halen = 6 };

    if (len >= 6)
        memcpy(to.sll_addr, frame, 6);
    return sendto(fd, frame, len, 0, (struct sockaddr *)&to, sizeof(to)) < 0 ? -errno : 0;
}

/* statfs f_type of path, or -errno. */
static long dfxdp_fs_magic(const char *path)
{
    struct statfs st;
    if (statfs(path, &st) < 0)
        return -errno;
    return (long)st.f_type;
}

static int dfxdp_mount_bpffs(const char *path)
{
    return mount("bpf", path, "bpf", 0, "mode=0700") < 0 ? -errno : 0;
}

/* What an opened (not yet loaded) object declares for a map: what a pinned map
 * must match for libbpf to reuse it. */
struct bpf_map_def_view { __u32 type; __u32 key_size; __u32 value_size; __u32 max_entries; __u32 map_flags; };

static void dfxdp_map_def(const struct bpf_map *map, struct bpf_map_def_view *out)
{
    out->type = bpf_map__type(map);
    out->key_size = bpf_map__key_size(map);
    out->value_size = bpf_map__value_size(map);
    out->max_entries = bpf_map__max_entries(map);
    out->map_flags = bpf_map__map_flags(map);
}

/* A loaded program as the kernel sees it; gpl_compatible is a bit field, which
 * cffi cannot declare in a partial struct. */
struct dfxdp_prog_view { __u32 type; __u32 id; __u32 gpl_compatible; char name[16]; };

static int dfxdp_prog_info(int fd, struct dfxdp_prog_view *out)
{
    struct bpf_prog_info info = {};
    __u32 len = sizeof(info);
    int err = bpf_obj_get_info_by_fd(fd, &info, &len);

    if (err < 0)
        return err;
    out->type = info.type;
    out->id = info.id;
    out->gpl_compatible = info.gpl_compatible;
    memcpy(out->name, info.name, sizeof(out->name));
    return 0;
}
"""

ffibuilder = FFI()
ffibuilder.cdef(LIBBPF_CDEF + maps_cdef(maps_dir()))
ffibuilder.set_source(
    "dfxdp._libbpf",
    C_SOURCE,
    libraries=["bpf", "elf", "z"],
    include_dirs=[str(maps_dir())],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
