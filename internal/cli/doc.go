// Package cli is the operator command line of the tapbridge binary (what it
// does when run without CNI_COMMAND): up, down, status, tap, mac. It parses
// flags and prints; every change is made by the core packages.
package cli
