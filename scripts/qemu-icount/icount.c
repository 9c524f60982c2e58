/*
 * QEMU TCG plugin: counts the guest instructions executed between two addresses.
 *
 *   qemu-system-arm ... -plugin libicount.so,begin=ADDR,end=ADDR,out=FILE
 *
 * Every executed instruction adds 1 to a counter (an inline add, no callback). When the
 * instruction at `begin` executes, the counter is noted; when the instruction at `end`
 * executes, the difference is appended to FILE as one decimal line. spikenas puts
 * `begin`/`end` on two marker functions around each inference, so FILE gets one line
 * per image. QEMU does not model cycles: these are instructions, exactly.
 *
 * The few qemu_plugin_* declarations are written out by hand (Debian ships no
 * qemu-plugin.h); they match QEMU 7.2's API, version 1.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef uint64_t qemu_plugin_id_t;
struct qemu_plugin_tb;
struct qemu_plugin_insn;
typedef struct qemu_info_t qemu_info_t;
enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS = 0 };
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 = 0 };
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t, struct qemu_plugin_tb *);
typedef void (*qemu_plugin_vcpu_udata_cb_t)(unsigned int vcpu_index, void *userdata);
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);

void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t, qemu_plugin_vcpu_tb_trans_cb_t);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *, size_t);
uint64_t qemu_plugin_insn_vaddr(const struct qemu_plugin_insn *);
void qemu_plugin_register_vcpu_insn_exec_inline(struct qemu_plugin_insn *, enum qemu_plugin_op,
                                                void *, uint64_t);
void qemu_plugin_register_vcpu_insn_exec_cb(struct qemu_plugin_insn *, qemu_plugin_vcpu_udata_cb_t,
                                            enum qemu_plugin_cb_flags, void *);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t, qemu_plugin_udata_cb_t, void *);

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

static uint64_t executed;   /* instructions so far (one vCPU: the Cortex-M) */
static uint64_t opened_at;  /* `executed` when `begin` ran */
static int open_window;
static uint64_t begin_addr, end_addr;
static FILE *out;

static void on_begin(unsigned int vcpu, void *u) { opened_at = executed; open_window = 1; }

static void on_end(unsigned int vcpu, void *u)
{
    if (open_window) {
        fprintf(out, "%llu\n", (unsigned long long)(executed - opened_at));
        fflush(out);
        open_window = 0;
    }
}

static void on_tb(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    size_t n = qemu_plugin_tb_n_insns(tb);
    for (size_t i = 0; i < n; i++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        uint64_t pc = qemu_plugin_insn_vaddr(insn);
        /* Callbacks run before the inline add of the same instruction: a window counts
         * from the first instruction at `begin` up to, not including, the one at `end`. */
        if (pc == begin_addr)
            qemu_plugin_register_vcpu_insn_exec_cb(insn, on_begin, QEMU_PLUGIN_CB_NO_REGS, NULL);
        if (pc == end_addr)
            qemu_plugin_register_vcpu_insn_exec_cb(insn, on_end, QEMU_PLUGIN_CB_NO_REGS, NULL);
        qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64, &executed, 1);
    }
}

static void at_exit(qemu_plugin_id_t id, void *u) { fclose(out); }

__attribute__((visibility("default")))
int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv)
{
    const char *path = NULL;
    for (int i = 0; i < argc; i++) {
        if (!strncmp(argv[i], "begin=", 6)) begin_addr = strtoull(argv[i] + 6, NULL, 0);
        else if (!strncmp(argv[i], "end=", 4)) end_addr = strtoull(argv[i] + 4, NULL, 0);
        else if (!strncmp(argv[i], "out=", 4)) path = argv[i] + 4;
        else {
            fprintf(stderr, "icount: unknown argument `%s` (begin=, end=, out=)\n", argv[i]);
            return -1;
        }
    }
    if (!begin_addr || !end_addr || !path) {
        fprintf(stderr, "icount: needs begin=ADDR,end=ADDR,out=FILE\n");
        return -1;
    }
    out = fopen(path, "w");
    if (!out) {
        perror(path);
        return -1;
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_tb);
    qemu_plugin_register_atexit_cb(id, at_exit, NULL);
    return 0;
}
