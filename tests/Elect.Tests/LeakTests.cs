using System.Text.Json;
using Elect.Datasets;
using Elect.Selection;
using Elect.Runner;
using TorchSharp;
using Xunit;

namespace Elect.Tests;

/// <summary>
/// Deterministic disposal: an edit leaves no live tensor behind (on CUDA a leaked tensor is leaked
/// device memory until some garbage collection happens to finalise it).
/// </summary>
public sealed class LeakTests : IDisposable
{
    private readonly string _tmp = Directory.CreateTempSubdirectory("elect-leak-").FullName;

    public void Dispose() => Directory.Delete(_tmp, recursive: true);

    [SkippableTheory]
    [InlineData("instructpix2pix")]
    [InlineData("ultraedit")]
    public void EditsLeaveNoLiveTensors(string family)
    {
        var model = family == "ultraedit" ? Fixtures.UltraEditTiny : Fixtures.Ip2pTiny;
        using var editor = Editor.Load(model, family, torch.CPU, torch.ScalarType.Float32);
        var input = Ip2pPipelineTests.Input(family == "ultraedit" ? "ultraedit-input.png" : "ip2p-input.png", 128);
        var options = new EditOptions { InferenceSteps = 6 };
        var selection = new SelectionOptions { StoppingStep = 3, LastMaskStep = 2 };
        void EditOnce(int k)
        {
            using var result = editor.Edit(input, "Replace the cat with a bear", [1, 2, 3], options, selection);
            EditOutputs.Write(_tmp, $"item{k}", input, result);
        }
        LeakCheck.NoTensorsLeftAlive(EditOnce, 3);
    }

    [SkippableFact]
    public void LibraryLevelPrepareAndRunLeaveNoLiveTensors()
    {
        using var editor = Ip2pPipelineTests.LoadTiny();
        var input = Ip2pPipelineTests.Input("ip2p-input.png", 128);
        var engine = new ElectEngine(editor.Model);
        void Once(int _)
        {
            using var condition = editor.Model.Prepare(input, "Replace the cat with a bear");
            using var result = engine.RunElect(condition, [1, 2], new EditOptions { InferenceSteps = 4 }, new SelectionOptions { StoppingStep = 2, LastMaskStep = 1 });
        }
        LeakCheck.NoTensorsLeftAlive(Once, 2);
    }

    /// <summary>
    /// What the issue asks of a dataset run (memory flat across items), checked the device-independent
    /// way: the summary's live-tensor count does not grow from the first item to the last.
    /// </summary>
    [SkippableFact]
    public void DatasetRunKeepsMemoryFlatAcrossItems()
    {
        using var editor = Ip2pPipelineTests.LoadTiny();
        var ds = Directory.CreateDirectory(Path.Combine(_tmp, "ds")).FullName;
        var image = JsonSerializer.Serialize(Path.Combine(Fixtures.Require(), "models", "ip2p-input.png"));
        var entries = Enumerable.Range(0, 8).Select(k => $"\"item{k}\": {{\"image_path\": {image}, \"editing_instruction\": \"Replace the cat with a bear\"}}");
        File.WriteAllText(Path.Combine(ds, EditDataset.GenericFile), "{" + string.Join(",", entries) + "}");
        var summary = new DatasetRunner(editor).Run(new DatasetRunOptions
        {
            DatasetDir = ds,
            OutputDir = Path.Combine(_tmp, "out"),
            Resolution = 128,
            Seeds = [1, 2, 3],
            Edit = new EditOptions { InferenceSteps = 4 },
            Selection = new SelectionOptions { StoppingStep = 2, LastMaskStep = 1 },
        });
        Assert.Equal(8, summary.Done);
        var memory = summary.Memory;
        Assert.Equal(8, memory.Items);
        var live = memory.LiveTensors!;
        Assert.True(live.Growth == 0 && live.Max == live.Min,
                    $"live tensors over the run: {live}");
        Assert.NotNull(memory.ProcessRssMib);
    }
}
