# Greedy set cover over a libFuzzer merge control file: prints the paths of
# at most MAX inputs, each chosen for the most edges (COV) not yet covered.
NR == 1 { nfiles = $1; next }
NR == 2 { next }
NR <= nfiles + 2 { path[NR - 3] = $0; next }
$1 == "COV" { i = $2; n = 0; for (k = 3; k <= NF; k++) cov[i, ++n] = $k; ncov[i] = n }
END {
  for (picked = 0; picked < MAX; picked++) {
    best = -1; gain = 0
    for (i in ncov) {
      if (i in chosen) continue
      g = 0
      for (k = 1; k <= ncov[i]; k++) if (!(cov[i, k] in covered)) g++
      if (g > gain) { gain = g; best = i }
    }
    if (best < 0) break
    chosen[best] = 1
    for (k = 1; k <= ncov[best]; k++) covered[cov[best, k]] = 1
    print path[best]
  }
}
