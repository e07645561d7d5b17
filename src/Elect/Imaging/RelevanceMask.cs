using TorchSharp;
using static TorchSharp.torch;

namespace Elect.Imaging;

/// <summary>
/// The relevance-mask image the ELECT reference writes next to its outputs (key <c>"output-mask"</c>):
/// <code>Image.fromarray(cv2.resize((self.mean_relevance_map * 255).astype(np.uint8), (512, 512)))</code>
/// i.e. the latent-resolution map in [0,1] is TRUNCATED to 8 bits first, then upsampled with OpenCV's bilinear
/// (<see cref="CvResize.Linear"/>). The reference resizes to a fixed 512x512; like the fixtures, we resize to the edited
/// image's own size (width x height), which is what 512x512 inputs get anyway.
/// Reproduces the fixtures' <c>*.output-mask</c> goldens exactly.
/// </summary>
public static class RelevanceMask
{
    /// <summary>From a [h,w] map (float32 or float64 tensor; see <see cref="GrayImage.FromUnitFloat(Tensor)"/>).</summary>
    public static GrayImage ToImage(Tensor map, int width, int height) =>
        CvResize.Linear(GrayImage.FromUnitFloat(map), width, height);

    /// <summary>From a row-major float32 map of mapWidth x mapHeight.</summary>
    public static GrayImage ToImage(ReadOnlySpan<float> map, int mapWidth, int mapHeight, int width, int height) =>
        CvResize.Linear(GrayImage.FromUnitFloat(map, mapWidth, mapHeight), width, height);

    /// <summary>From a row-major float64 map of mapWidth x mapHeight.</summary>
    public static GrayImage ToImage(ReadOnlySpan<double> map, int mapWidth, int mapHeight, int width, int height) =>
        CvResize.Linear(GrayImage.FromUnitFloat(map, mapWidth, mapHeight), width, height);
}
