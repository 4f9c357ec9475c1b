package config

import "time"

// ParseDuration parses a positive duration for the field named field.
func ParseDuration(field, s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fieldErr(field, "must be a positive duration such as \"5s\", got %q", s)
	}
	return d, nil
}
