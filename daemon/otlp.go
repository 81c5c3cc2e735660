package daemon

import (
	"context"
	"errors"
	"log/slog"
	"os"
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
func startOTLP(cfg config.OTLPSettings, g prometheus.Gatherer, instance string, log *slog.Logger) (stop func(context.Context) error, err error) {
	opts := []otlpmetrichttp.Option{
		otlpmetrichttp.WithEndpointURL(cfg.Endpoint),
		// The same cumulative counters Prometheus scrapes.
		otlpmetrichttp.WithTemporalitySelector(sdkmetric.DefaultTemporalitySelector),
		otlpmetrichttp.WithRetry(otlpmetrichttp.RetryConfig{Enabled: false}),
		otlpmetrichttp.WithTimeout(min(cfg.Interval, 30*time.Second)),
	}
	if len(cfg.Headers) > 0 {
		opts = append(opts, otlpmetrichttp.WithHeaders(cfg.Headers))
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
	reader := sdkmetric.NewPeriodicReader(&recoveryLogger{Exporter: exp, log: log},
		sdkmetric.WithInterval(cfg.Interval),
		sdkmetric.WithProducer(promb.NewMetricProducer(promb.WithGatherer(g))))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader), sdkmetric.WithResource(res))
	log.Info("exporting metrics over OTLP", "endpoint", cfg.Endpoint, "interval", cfg.Interval)
	return func(ctx context.Context) error {
		if err := mp.Shutdown(ctx); err != nil && !errors.Is(err, context.Canceled) {
			// A receiver that is down does not make the stop a failure.
			log.Warn("OTLP: the last export failed", "err", err)
		}
		return nil
	}, nil
}

var (
	otlpLogger      atomic.Pointer[slog.Logger]
	otlpHandlerOnce sync.Once
)

// recoveryLogger logs the first export that works after failures, so
// that the log says when the receiver is back.
type recoveryLogger struct {
	sdkmetric.Exporter
	log    *slog.Logger
	failed atomic.Bool
}

func (e *recoveryLogger) Export(ctx context.Context, rm *metricdata.ResourceMetrics) error {
	err := e.Exporter.Export(ctx, rm)
	if err != nil {
		e.failed.Store(true)
	} else if e.failed.Swap(false) {
		e.log.Info("OTLP export works again")
	}
	return err
}
