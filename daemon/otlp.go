package daemon

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelslot/modelslot"
	"github.com/modelslot/modelslot/config"
	"github.com/prometheus/client_golang/prometheus"
	promb "go.opentelemetry.io/contrib/bridges/prometheus"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/resource"
)

// startOTLP pushes what the registry gathers (the metrics of /metrics,
// under the same names and labels) to an OTLP/HTTP receiver every
// interval, through OpenTelemetry's Prometheus bridge and OTLP exporter.
// The returned stop makes a last export and stops. The exporter also reads
// the standard OTEL_EXPORTER_OTLP_* variables for what the config does not
// set (TLS certificates, compression, headers).
func startOTLP(cfg config.OTLP, getenv func(string) string, g prometheus.Gatherer, instance string, log *slog.Logger) (stop func(context.Context) error, err error) {
	endpoint, interval, headers, err := otlpSettings(cfg, getenv)
	if err != nil {
		return nil, err
	}
	opts := []otlpmetrichttp.Option{
		otlpmetrichttp.WithEndpointURL(endpoint),
		// The same cumulative counters Prometheus scrapes.
		otlpmetrichttp.WithTemporalitySelector(sdkmetric.DefaultTemporalitySelector),
		otlpmetrichttp.WithRetry(otlpmetrichttp.RetryConfig{Enabled: false}),
		otlpmetrichttp.WithTimeout(min(interval, 30*time.Second)),
	}
	if len(headers) > 0 {
		opts = append(opts, otlpmetrichttp.WithHeaders(headers))
	}
	exp, err := otlpmetrichttp.New(context.Background(), opts...)
	if err != nil {
		return nil, modelslot.Errorf(modelslot.EINVALID, "config: otlp: %v", err)
	}
	otlpLogger.Store(log)
	otlpHandlerOnce.Do(func() {
		otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
			if l := otlpLogger.Load(); l != nil {
				l.Warn("OTLP export failed", "err", err)
			}
		}))
	})
	if instance == "" {
		instance, _ = os.Hostname()
	}
	res := resource.NewSchemaless(
		attribute.String("service.name", "modelslot"),
		attribute.String("service.instance.id", instance),
	)
	reader := sdkmetric.NewPeriodicReader(&countingExporter{Exporter: exp, log: log},
		sdkmetric.WithInterval(interval),
		sdkmetric.WithProducer(promb.NewMetricProducer(promb.WithGatherer(g))))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader), sdkmetric.WithResource(res))
	log.Info("exporting metrics over OTLP", "endpoint", endpoint, "interval", interval)
	return func(ctx context.Context) error {
		if err := mp.Shutdown(ctx); err != nil && !errors.Is(err, context.Canceled) {
			// A receiver that is down does not make the stop a failure.
			log.Warn("OTLP: the last export failed", "err", err)
		}
		return nil
	}, nil
}

// otlpSettings checks the endpoint and interval and reads the headers'
// ${ENV_NAME} values, before anything starts.
func otlpSettings(cfg config.OTLP, getenv func(string) string) (endpoint string, interval time.Duration, headers map[string]string, err error) {
	endpoint, err = cfg.OTLPURL()
	if err != nil {
		return "", 0, nil, modelslot.Errorf(modelslot.EINVALID, "otlp.endpoint (--otlp-endpoint): %v", err)
	}
	headers = make(map[string]string, len(cfg.Headers))
	for k, v := range cfg.Headers {
		if name, ok := strings.CutPrefix(v, "${"); ok && strings.HasSuffix(name, "}") {
			name = strings.TrimSuffix(name, "}")
			if v = getenv(name); v == "" {
				return "", 0, nil, modelslot.Errorf(modelslot.EINVALID, "config: otlp.headers %s reads ${%s}, which is not set in the daemon's environment", k, name)
			}
		}
		headers[k] = v
	}
	interval = cfg.Interval.D()
	if interval == 0 {
		interval = config.DefaultOTLPInterval
	}
	if interval < time.Second {
		return "", 0, nil, modelslot.Errorf(modelslot.EINVALID, "otlp.interval (--otlp-interval): %v is too short: at least 1s", interval)
	}
	return endpoint, interval, headers, nil
}

var (
	otlpLogger      atomic.Pointer[slog.Logger]
	otlpHandlerOnce sync.Once
)

// countingExporter logs the first export that works after failures, so
// that the log says when the receiver is back.
type countingExporter struct {
	sdkmetric.Exporter
	log    *slog.Logger
	failed atomic.Bool
}

func (e *countingExporter) Export(ctx context.Context, rm *metricdata.ResourceMetrics) error {
	err := e.Exporter.Export(ctx, rm)
	if err != nil {
		e.failed.Store(true)
	} else if e.failed.Swap(false) {
		e.log.Info("OTLP export works again")
	}
	return err
}
