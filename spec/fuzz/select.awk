# spec/fuzz/select.awk - picks at most MAX inputs from a libFuzzer merge
# control file (-merge_control_file): greedily, the input with the most
# edges (COV lines) not yet covered, then, once every edge is covered, the
# input with the most features (FT lines: edges with hit counts) not yet
# covered. Prints their paths, one a line.
#   awk -v MAX=200 -f spec/fuzz/select.awk build/fuzz/NAME.merge.ctl
# A control file lists each edge and feature once, at the first input (by
# size) that reached it, so the picks cover every edge the merge saw when
# there are no more than MAX inputs with a COV entry.
NR == 1 { nfiles = $1; next }
NR == 2 { next }
NR <= nfiles + 2 { path[NR - 3] = $0; next }
$1 == "COV" { i = $2; n = 0; for (k = 3; k <= NF; k++) cov[i, ++n] = $k; ncov[i] = n }
$1 == "FT" { i = $2; n = 0; for (k = 3; k <= NF; k++) ft[i, ++n] = $k; nft[i] = n }
function pick(kind,    i, k, g, best, gain) {
  best = -1; gain = 0
  for (i in path) {
    if (i in chosen) continue
    g = 0
    if (kind == "COV") {
      for (k = 1; k <= ncov[i]; k++) if (!(cov[i, k] in covered)) g++
    } else {
      for (k = 1; k <= nft[i]; k++) if (!(ft[i, k] in featured)) g++
    }
    if (g > gain) { gain = g; best = i }
  }
  if (best < 0) return 0
  chosen[best] = 1
  for (k = 1; k <= ncov[best]; k++) covered[cov[best, k]] = 1
  for (k = 1; k <= nft[best]; k++) featured[ft[best, k]] = 1
  print path[best]
  return 1
}
END {
  picked = 0
  while (picked < MAX && pick("COV")) picked++
  while (picked < MAX && pick("FT")) picked++
}
