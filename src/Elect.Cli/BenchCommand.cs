using System.CommandLine;
using Elect.Runner;
using Elect.Modeling;
using Elect.Pipelines;
using Microsoft.Extensions.Logging;
using TorchSharp;
using static TorchSharp.torch;

namespace Elect.Cli;

/// <summary><c>elect bench</c>: times plain, ELECT and Best-of-N on the same weights and prints JSON.</summary>
internal static class BenchCommand
{
    public static Command Build(TextWriter stdout, TextWriter stderr)
    {
        var c = new Command("bench", "Time plain single-seed editing, ELECT and full Best-of-N (random full-size weights unless --model-path is given)");
        var model = new Option<string>("--model") { Description = ModelFamilies.NamesInProse(), DefaultValueFactory = _ => "instructpix2pix" };
        model.AcceptOnlyFromAmong([.. Editor.Families]);
        var modelPath = new Option<string?>("--model-path") { Description = "Checkpoint folder (default: random weights of the real architecture)" };
        var device = new Option<string>("--device") { Description = "cpu, cuda, cuda:N or auto", DefaultValueFactory = _ => "auto" };
        var dtype = new Option<string?>("--dtype") { Description = "fp32, fp16 or bf16 (default: fp16 on CUDA, fp32 on CPU)" };
        var resolution = new Option<int>("--resolution") { DefaultValueFactory = _ => 512, Description = "Image side" };
        var steps = new Option<int>("--inference-steps") { DefaultValueFactory = _ => 100, Description = "Denoising steps T" };
        var candidates = new Option<int>("--candidates") { DefaultValueFactory = _ => 10, Description = "Candidate seeds N" };
        var stop = new Option<int>("--stopping-step") { DefaultValueFactory = _ => 40, Description = "ELECT stopping step" };
        var lastMask = new Option<int>("--last-step-for-mask-extraction") { DefaultValueFactory = _ => 20, Description = "Last mask step" };
        var runs = new Option<int>("--runs") { DefaultValueFactory = _ => 3, Description = "Timed runs per mode (median reported)" };
        var warmup = new Option<int>("--warmup") { DefaultValueFactory = _ => 1, Description = "Untimed warm-up runs per mode" };
        var maxBatch = new Option<int?>("--max-batch") { Description = "Candidates per model call" };
        var modes = new Option<string[]>("--modes") { Description = "Any of plain, elect, best-of-n, elect-sequential, separated by spaces, commas or '|'", AllowMultipleArgumentsPerToken = true, DefaultValueFactory = _ => [.. Bench.DefaultModes] };
        var size = new Option<string>("--size") { Description = "Random-weight architecture: full (real sizes) or tiny (CPU smoke runs)", DefaultValueFactory = _ => "full" };
        var llmLayers = new Option<int?>("--llm-layers") { Description = "mgie with random weights: LLaMA-7B decoder layers to build (default all 32; e.g. 2 on a CPU; 0: no LLM, random [IMG] states)" };
        var output = new Option<string?>("--output") { Description = "Also write the JSON here" };
        var logLevel = new Option<string>("--log-level") { DefaultValueFactory = _ => "information", Description = "Logging threshold" };
        foreach (var o in new Option[] { model, modelPath, device, dtype, resolution, steps, candidates, stop, lastMask, runs, warmup, maxBatch, modes, size, llmLayers, output, logLevel })
            c.Add(o);
        c.SetAction(p => ElectCli.Guard(stderr, p.GetValue(logLevel)!, log =>
        {
            // fail in seconds, before any model is built, when libtorch's symbols do not match the binding
            if (NativeCheck.Check() is { } note) log.LogWarning("native self-check: {Note}", note);
            else log.LogInformation("native self-check: every libtorch symbol the binding needs resolved");
            var outputPath = p.GetValue(output);
            ElectCli.CheckReportFile(outputPath, "--output");
            var modeList = p.GetValue(modes)!.SelectMany(m => m.Split([',', '|'], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)).ToArray();
            var dev = TorchRuntime.ParseDevice(p.GetValue(device)!);
            TorchRuntime.Initialize(dev);
            var dt = p.GetValue(dtype) is { } d ? TorchRuntime.ParseDType(d) : dev.type == DeviceType.CUDA ? ScalarType.Float16 : ScalarType.Float32;
            var result = Bench.Run(new BenchOptions
            {
                Family = p.GetValue(model)!,
                ModelPath = p.GetValue(modelPath),
                Device = dev,
                DType = dt,
                Resolution = p.GetValue(resolution),
                Steps = p.GetValue(steps),
                Candidates = p.GetValue(candidates),
                StoppingStep = p.GetValue(stop),
                LastMaskStep = p.GetValue(lastMask),
                Runs = p.GetValue(runs),
                Warmup = p.GetValue(warmup),
                MaxBatch = p.GetValue(maxBatch),
                Modes = modeList,
                Size = p.GetValue(size)!,
                LlmLayers = p.GetValue(llmLayers),
            }, log, partial =>
            {
                // each mode's figures land in --output as soon as the mode completes (atomic rewrite)
                if (outputPath is not null) JsonFiles.Write(outputPath, partial);
            });
            stdout.WriteLine(JsonFiles.ToJson(result));
            return 0;
        }));
        return c;
    }
}
