// `{{name}}`: a script (a plain `wasi:cli/command`, on wasi-libc). It sees
// only the directories and variables `runner.toml` grants it.

#include <stdio.h>

int main(int argc, char **argv) {
    printf("hello, %s\n", argc > 1 ? argv[1] : "world");
    return 0;
}
