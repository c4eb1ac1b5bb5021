/* Starts the app (argv[1]) with the BPF program attached to it alone; prints the counts. */
#include <bpf/libbpf.h>
#include <bpf/bpf.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <signal.h>
#include <sys/wait.h>
int main(int argc, char **argv) {
	/* argv: app-binary */
	int pfd[2]; pipe(pfd);
	pid_t child = fork();
	if (!child) { char c; read(pfd[0], &c, 1); execv(argv[1], argv + 1); _exit(127); }
	struct bpf_object *o = bpf_object__open_file("goid.bpf.o", NULL);
	struct bpf_map *ro = bpf_object__find_map_by_name(o, ".rodata");
	size_t sz; __u32 *rod = (__u32 *)bpf_map__initial_value(ro, &sz);
	rod[0] = child; *(__u64 *)((char *)rod + 8) = atoll(getenv("GOID_OFF"));
	if (bpf_object__load(o)) { perror("load"); return 1; }
	struct bpf_link *l = bpf_program__attach(bpf_object__find_program_by_name(o, "on_exit"));
	if (!l) { perror("attach"); return 1; }
	write(pfd[1], "x", 1);
	int st; waitpid(child, &st, 0);
	int fd = bpf_map__fd(bpf_object__find_map_by_name(o, "res"));
	const char *n[] = {"match", "mismatch", "unreadable"};
	for (__u32 k = 0; k < 3; k++) { __u64 v = 0; bpf_map_lookup_elem(fd, &k, &v); printf("%s %llu\n", n[k], v); }
	return 0;
}
