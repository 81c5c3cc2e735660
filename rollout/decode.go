package rollout

import (
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/modelslot/modelslot"
	"gopkg.in/yaml.v3"
)

// Strict YAML decoding that names the field path of every error
// ("steps[2].bake.max: "5x" is not a duration"), which yaml.v3's own
// KnownFields errors do not (they give a line number and a Go type name).

// nodeDecoder is implemented by types with their own YAML shape.
type nodeDecoder interface {
	decodeNode(n *yaml.Node, path string) error
}

var (
	durationType = reflect.TypeOf(modelslot.Duration(0))
	nodeDecType  = reflect.TypeOf((*nodeDecoder)(nil)).Elem()
	timeDurType  = reflect.TypeOf(time.Duration(0))
)

func reflectOf(ptr any) reflect.Value { return reflect.ValueOf(ptr).Elem() }

// fieldError is an invalid-input error about one field.
func fieldError(path, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if path != "" {
		msg = path + ": " + msg
	}
	return modelslot.Errorf(modelslot.EINVALID, "%s", msg)
}

func join(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}

func index(path string, i int) string { return fmt.Sprintf("%s[%d]", path, i) }

// DecodeStrict decodes n into v (a pointer) the way plans are decoded:
// unknown fields, wrong types and bad durations are errors that start with
// path. Gate factories use it for their specs.
func DecodeStrict(n *yaml.Node, path string, v any) error {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return fmt.Errorf("DecodeStrict: want a non-nil pointer, got %T", v)
	}
	return decodeValue(n, path, rv.Elem())
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return strconv.Quote(n.Value)
	}
	return "this"
}

func decodeValue(n *yaml.Node, path string, v reflect.Value) error {
	for n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		n = n.Content[0]
	}
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if v.CanAddr() && v.Addr().Type().Implements(nodeDecType) {
		return v.Addr().Interface().(nodeDecoder).decodeNode(n, path)
	}
	if isNull(n) {
		v.Set(reflect.Zero(v.Type()))
		return nil
	}
	switch v.Type() {
	case durationType, timeDurType:
		d, err := parseDuration(n)
		if err != nil {
			return fieldError(path, "%v", err)
		}
		v.SetInt(int64(d))
		return nil
	}
	switch v.Kind() {
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		if err := decodeValue(n, path, p.Elem()); err != nil {
			return err
		}
		v.Set(p)
		return nil
	case reflect.Struct:
		return decodeStruct(n, path, v)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return fieldError(path, "%s is not a list", describe(n))
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, c := range n.Content {
			if err := decodeValue(c, index(path, i), s.Index(i)); err != nil {
				return err
			}
		}
		v.Set(s)
		return nil
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			return fieldError(path, "%s is not a string", describe(n))
		}
		v.SetString(n.Value)
		return nil
	case reflect.Bool:
		var b bool
		if n.Kind != yaml.ScalarNode || n.Decode(&b) != nil {
			return fieldError(path, "%s is not true or false", describe(n))
		}
		v.SetBool(b)
		return nil
	case reflect.Int, reflect.Int64:
		var i int64
		if n.Kind != yaml.ScalarNode || n.Tag != "!!int" || n.Decode(&i) != nil {
			return fieldError(path, "%s is not a whole number", describe(n))
		}
		v.SetInt(i)
		return nil
	case reflect.Float64:
		var f float64
		if n.Kind != yaml.ScalarNode || (n.Tag != "!!int" && n.Tag != "!!float") || n.Decode(&f) != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return fieldError(path, "%s is not a number", describe(n))
		}
		v.SetFloat(f)
		return nil
	case reflect.Interface:
		var x any
		if err := n.Decode(&x); err != nil {
			return fieldError(path, "%v", err)
		}
		if x != nil {
			v.Set(reflect.ValueOf(x))
		}
		return nil
	}
	return fmt.Errorf("%s: cannot decode into %s", path, v.Type())
}

func parseDuration(n *yaml.Node) (time.Duration, error) {
	if n.Kind != yaml.ScalarNode {
		return 0, fmt.Errorf("%s is not a duration: write it like 90s, 5m or 1h30m", describe(n))
	}
	if n.Value == "0" {
		return 0, nil
	}
	d, err := time.ParseDuration(n.Value)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration: write it like 90s, 5m or 1h30m", n.Value)
	}
	if d < 0 {
		return 0, fmt.Errorf("%s is negative", n.Value)
	}
	return d, nil
}

// yamlName is the field's name in YAML: its yaml tag, else its json tag.
func yamlName(f reflect.StructField) string {
	for _, key := range []string{"yaml", "json"} {
		if tag, ok := f.Tag.Lookup(key); ok {
			name, _, _ := strings.Cut(tag, ",")
			if name != "" {
				return name
			}
		}
	}
	return ""
}

func decodeStruct(n *yaml.Node, path string, v reflect.Value) error {
	if n.Kind != yaml.MappingNode {
		return fieldError(path, "%s is not a mapping of fields", describe(n))
	}
	t := v.Type()
	fields := map[string]int{}
	var known []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name := yamlName(f)
		if !f.IsExported() || name == "" || name == "-" {
			continue
		}
		fields[name] = i
		known = append(known, name)
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, val := n.Content[i].Value, n.Content[i+1]
		fi, ok := fields[key]
		if !ok {
			return fieldError(join(path, key), "unknown field (known fields here: %s)", strings.Join(known, ", "))
		}
		if seen[key] {
			return fieldError(join(path, key), "is set twice")
		}
		seen[key] = true
		if err := decodeValue(val, join(path, key), v.Field(fi)); err != nil {
			return err
		}
	}
	return nil
}
