package cniplugin

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/types/create"
	"github.com/containernetworking/cni/pkg/version"
)

// The IPAM plugin ("ipam": {"type": ...}) is run as the CNI specification
// says a delegating plugin runs its delegate: found in CNI_PATH, with the
// plugin's own environment (CNI_COMMAND set to the verb) and configuration.
// This is what containernetworking/cni/pkg/invoke does; it is done here so
// that the plugin binary, which every ADD and DEL starts, does not carry
// (and initialise) invoke's tracing dependencies.

func ipamAdd(plugin string, conf []byte) (types.Result, error) {
	out, err := delegate("ADD", plugin, conf)
	if err != nil {
		return nil, err
	}
	confVersion, err := (&version.ConfigDecoder{}).Decode(conf)
	if err != nil {
		return nil, err
	}
	var raw map[string]any
	if err := json.Unmarshal(out, &raw); err != nil || raw == nil {
		return nil, fmt.Errorf("ipam %q printed no result: %q", plugin, out)
	}
	// A result without a version has the configuration's.
	if v, _ := raw["cniVersion"].(string); v != "" {
		return create.Create(v, out)
	}
	raw["cniVersion"] = confVersion
	if out, err = json.Marshal(raw); err != nil {
		return nil, err
	}
	return create.Create(confVersion, out)
}

func ipamDel(plugin string, conf []byte) error {
	_, err := delegate("DEL", plugin, conf)
	return err
}

func ipamCheck(plugin string, conf []byte) error {
	_, err := delegate("CHECK", plugin, conf)
	return err
}

func ipamStatus(plugin string, conf []byte) error {
	_, err := delegate("STATUS", plugin, conf)
	return err
}

func ipamGC(plugin string, conf []byte) error {
	_, err := delegate("GC", plugin, conf)
	return err
}

// delegate runs plugin with verb and returns its stdout. A failing plugin's
// CNI error is returned as it is.
// env, "KEY=VALUE" strings, replaces those variables of the plugin's own
// environment (CNI_PATH included).
func delegate(verb, plugin string, conf []byte, env ...string) ([]byte, error) {
	cniPath := os.Getenv("CNI_PATH")
	own := withoutVar(os.Environ(), "CNI_COMMAND")
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		if k == "CNI_PATH" {
			cniPath = v
		}
		own = withoutVar(own, k)
	}
	path, err := findPlugin(plugin, filepath.SplitList(cniPath))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(path)
	cmd.Env = append(append(own, env...), "CNI_COMMAND="+verb)
	cmd.Stdin = bytes.NewReader(conf)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	if stderr.Len() > 0 {
		_, _ = stderr.WriteTo(os.Stderr) // informational, as for any plugin
	}
	if err == nil {
		return stdout.Bytes(), nil
	}
	e := &types.Error{}
	if json.Unmarshal(stdout.Bytes(), e) == nil && (e.Code != 0 || e.Msg != "") {
		return nil, e
	}
	return nil, fmt.Errorf("ipam plugin %q failed (%s %v) without a CNI error: %q", plugin, verb, err, strings.TrimSpace(stdout.String()))
}

// findPlugin returns the path of the plugin named name in dirs.
func findPlugin(name string, dirs []string) (string, error) {
	if name == "" || strings.ContainsRune(name, os.PathSeparator) {
		return "", fmt.Errorf("ipam: %q: the type is a plugin name, not a path", name)
	}
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return p, nil
		}
	}
	return "", fmt.Errorf("ipam plugin %q not found in CNI_PATH %q", name, strings.Join(dirs, string(os.PathListSeparator)))
}

// withoutVar returns env without the variable name.
func withoutVar(env []string, name string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, name+"=") {
			out = append(out, kv)
		}
	}
	return out
}
