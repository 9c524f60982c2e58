/*
 * QEMU TCG plugin: per-instruction execution counts (a flat profile), for finding the hot
 * code of the firmware runtime. Used by scripts/profile-firmware.
 *
 *   qemu-system-arm ... -plugin libprofile.so,out=FILE
 *
 * Every executed instruction adds 1 to its own counter (an inline add); at exit FILE gets
 * one line `ADDR COUNT` (hex address, decimal count) per instruction that ran. Counters
 * are indexed by the low 20 bits of the address (both flash maps fit: 0x0 and 0x08000000).
 * Same hand-written API declarations as icount.c (QEMU 7.2, plugin API version 1).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef uint64_t qemu_plugin_id_t;
struct qemu_plugin_tb;
struct qemu_plugin_insn;
typedef struct qemu_info_t qemu_info_t;
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 = 0 };
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t, struct qemu_plugin_tb *);
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);

void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t, qemu_plugin_vcpu_tb_trans_cb_t);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *, size_t);
uint64_t qemu_plugin_insn_vaddr(const struct qemu_plugin_insn *);
void qemu_plugin_register_vcpu_insn_exec_inline(struct qemu_plugin_insn *, enum qemu_plugin_op,
                                                void *, uint64_t);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t, qemu_plugin_udata_cb_t, void *);

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

#define SLOTS (1u << 20)
static uint64_t counts[SLOTS];
static uint64_t base[SLOTS];
static const char *path;

static void on_tb(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    size_t n = qemu_plugin_tb_n_insns(tb);
    for (size_t i = 0; i < n; i++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        uint64_t pc = qemu_plugin_insn_vaddr(insn);
        uint32_t slot = pc & (SLOTS - 1);
        base[slot] = pc;
        qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64,
                                                   &counts[slot], 1);
    }
}

static void at_exit(qemu_plugin_id_t id, void *u)
{
    FILE *out = fopen(path, "w");
    if (!out) {
        perror(path);
        return;
    }
    for (uint32_t s = 0; s < SLOTS; s++)
        if (counts[s])
            fprintf(out, "%llx %llu\n", (unsigned long long)base[s], (unsigned long long)counts[s]);
    fclose(out);
}

__attribute__((visibility("default")))
int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv)
{
    for (int i = 0; i < argc; i++) {
        if (!strncmp(argv[i], "out=", 4)) path = argv[i] + 4;
        else {
            fprintf(stderr, "profile: unknown argument `%s` (out=)\n", argv[i]);
            return -1;
        }
    }
    if (!path) {
        fprintf(stderr, "profile: needs out=FILE\n");
        return -1;
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_tb);
    qemu_plugin_register_atexit_cb(id, at_exit, NULL);
    return 0;
}
