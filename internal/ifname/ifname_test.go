package ifname

import (
	"errors"
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		wantErr string
	}{
		{"br0", ""},
		{"eth0.100", ""},
		{"abcdefghijklmno", ""},
		{"abcdefghijklmnop", "16 bytes, at most 15"},
		{"", "empty"},
		{"a/b", "'/'"},
		{"a:b", "':'"},
		{"a b", "whitespace"},
		{"a\tb", "whitespace"},
		{"..", "reserved"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Validate("bridge", tt.name)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate(%q) = %v, want nil", tt.name, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("Validate(%q) = %v, want error containing %q", tt.name, err, tt.wantErr)
			}
			if !strings.HasPrefix(err.Error(), "bridge") {
				t.Errorf("error %q does not name the field", err)
			}
		})
	}
}
